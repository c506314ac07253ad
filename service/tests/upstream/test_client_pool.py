"""The data plane's HTTP/1.1 pool against small real servers on loopback: reuse, framing, failures."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inferstack.bounds import TooLarge
from inferstack.upstream.client import Pool
from inferstack.upstream.failures import ConnectError, ProtocolError

from ..waiting import until

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[[Handler], Awaitable["Server"]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    """A TCP server on a free loopback port that counts its connections and the requests it read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = Server(handler)
        server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    """The pool under test, closed even when the test fails."""
    pool = Pool(connect_timeout=5)
    yield pool
    await pool.close()


async def fetch(pool: Pool, url: str) -> bytes:
    """One request's whole answer body, its connection released."""
    resp = await pool.post(url, "/v1/x", b"{}", {})
    body = await resp.read()
    resp.close()
    return body


def answering(answer: bytes, gate: asyncio.Event | None = None) -> Handler:
    """A kept-alive server that gives every request ``answer`` (once ``gate`` is set, if given)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            if gate is not None:
                await gate.wait()
            writer.write(answer)

    return handler


keep_alive = answering(OK)


async def test_a_finished_answer_leaves_its_connection_for_the_next_request(serve: Serve, pool: Pool) -> None:
    server = await serve(keep_alive)
    for _ in range(3):
        async with asyncio.timeout(5):
            resp = await pool.post(server.url, "/v1/x", b"{}", {"x-request-id": "r"})
            assert (resp.status, resp.content_type, await resp.read()) == (200, "application/json", b"{}")
            resp.close()
    assert server.connections == 1


async def test_a_connection_idle_past_the_idle_timeout_is_not_reused(serve: Serve) -> None:
    server = await serve(keep_alive)
    pool = Pool(connect_timeout=5, idle_timeout=0.05)
    async with asyncio.timeout(5):
        for _ in range(2):
            resp = await pool.post(server.url, "/v1/x", b"{}", {})
            assert await resp.read() == b"{}"
            resp.close()
            await asyncio.sleep(0.1)  # idle for twice the idle timeout: the engine may be closing it
    assert server.connections == 2
    await pool.close()


async def test_an_answer_not_read_to_its_end_closes_its_connection(serve: Serve, pool: Pool) -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await reader.read()  # until the client goes
        writer.close()

    server = await serve(stream)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.readany() == b"data: "
        resp.close()  # the engine must see the request go: it stops generating
        # and the pool forgets the connection (kept in its books, every aborted or broken connection
        # of a long-running gateway would stay in memory)
        await until(lambda: not pool._busy and not pool._idle, "the closed connection gone from the pool")
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.readany() == b"data: "
        resp.close()
    assert server.connections == 2


async def test_a_connection_the_engine_closed_while_idle_is_replaced_once(serve: Serve, pool: Pool) -> None:
    async def once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        # Closes after the answer, like an engine's keep-alive expiring, without "connection: close".

    server = await serve(once_then_drop)
    async with asyncio.timeout(5):
        for _ in range(3):
            resp = await pool.post(server.url, "/v1/x", b"{}", {})
            assert await resp.read() == b"{}"
            resp.close()
            await asyncio.sleep(0.05)  # let the close arrive (the pool may or may not have seen it)
    assert server.connections == 3


async def test_a_connection_closed_before_its_answer_was_released_is_not_kept(serve: Serve, pool: Pool) -> None:
    closed = asyncio.Event()

    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await serve(answer_and_close)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.read() == b"{}"
        await closed.wait()
        await asyncio.sleep(0.05)  # let the close reach the pool (if it has not, the test checks less)
        resp.close()  # the answer was whole, but its connection is gone: not back to the pool
        closed.clear()
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.read() == b"{}"
        resp.close()
    assert server.connections == 2


async def test_a_reused_connection_that_breaks_mid_answer_is_not_sent_again(serve: Serve, pool: Pool) -> None:
    # Only a connection that broke before any byte of the answer was idle-closed by the engine; one that
    # broke midway reached the engine, which may be generating: sending the request again would repeat it.
    async def ok_then_half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-")
        await writer.drain()

    server = await serve(ok_then_half)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.read() == b"{}"
        resp.close()
        with pytest.raises(ProtocolError):
            await pool.post(server.url, "/v1/x", b"{}", {})
    assert server.connections == 1


async def test_chunks_arrive_as_sent_and_a_close_mid_body_is_a_protocol_error(serve: Serve, pool: Pool) -> None:
    gate = asyncio.Event()

    async def chunks_then_die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"2\r\nde\r\n")
        await writer.drain()
        writer.transport.abort()

    server = await serve(chunks_then_die)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.readany() == b"abc"
        gate.set()
        assert await resp.readany() == b"de"
        with pytest.raises(ProtocolError):
            await resp.readany()
        resp.close()


async def test_a_body_ended_by_the_close_of_its_connection_is_whole(serve: Serve, pool: Pool) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    server = await serve(until_close)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        assert await resp.read() == b"all of it"
        resp.close()


async def test_not_http_is_a_protocol_error_and_a_refused_connect_a_connect_error(serve: Serve, pool: Pool) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    server = await serve(garbage)
    async with asyncio.timeout(5):
        with pytest.raises(ProtocolError):
            await pool.post(server.url, "/v1/x", b"{}", {})
        url = server.url
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()
        with pytest.raises(ConnectError):
            await pool.post(url, "/v1/x", b"{}", {})


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_reader_that_falls_behind_pauses_the_engine_connection(serve: Serve, pool: Pool, framing: str) -> None:
    size = 1 << 20

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if framing == "content-length":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size)
        else:  # small chunks, as an engine streams: the pile-up is counted across them
            piece = b"400\r\n" + b"x" * 1024 + b"\r\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + piece * (size // 1024) + b"0\r\n\r\n"
            )
        await writer.drain()

    server = await serve(big)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        got = 0
        for _ in range(2):  # each time the reader falls behind, not only the first
            await asyncio.sleep(0.1)  # the reader is busy: the pool stops reading past its high-water mark
            got += len(await resp.readany())
            assert got < size
        assert got + len(await resp.read()) == size
        resp.close()


async def test_what_arrives_between_two_reads_waits_for_the_next(serve: Serve, pool: Pool) -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    done = asyncio.Event()

    async def two_parts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for gate, part in zip(gates, (b"3\r\nabc\r\n", b"2\r\nde\r\n0\r\n\r\n"), strict=True):
            await gate.wait()
            writer.write(part)
            await writer.drain()
        writer.close()
        await writer.wait_closed()  # a loop turn later than the write: the client has had the bytes by now
        done.set()

    server = await serve(two_parts)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        reading = asyncio.create_task(resp.readany())  # waits: nothing of the body has been sent
        gates[0].set()
        assert await reading == b"abc"
        gates[1].set()  # the rest arrives while nobody reads (a relay writing to its client)
        await done.wait()
        assert await resp.read() == b"de"
        resp.close()


async def test_connections_of_concurrent_requests_are_all_kept_for_the_next_ones(serve: Serve, pool: Pool) -> None:
    release = asyncio.Event()
    server = await serve(answering(OK, release))

    async with asyncio.timeout(5):
        for _ in range(2):  # three at once, twice: the first three connections serve the second three
            tasks = [asyncio.create_task(fetch(pool, server.url)) for _ in range(3)]
            while server.connections < 3:
                await asyncio.sleep(0)
            release.set()
            assert await asyncio.gather(*tasks) == [b"{}"] * 3
            release.clear()
    assert server.connections == 3


async def test_an_idle_connection_the_engine_closes_leaves_the_others_kept(serve: Serve, pool: Pool) -> None:
    release = asyncio.Event()

    async def first_closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closes = server.connections == 1  # the first connection ends after its answer, the second stays
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await release.wait()
            writer.write(OK)
            await writer.drain()
            if closes:
                return

    server = await serve(first_closes)

    async with asyncio.timeout(5):
        tasks = [asyncio.create_task(fetch(pool, server.url)) for _ in range(2)]
        while server.connections < 2:
            await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*tasks) == [b"{}"] * 2
        # the first connection's close reaches the pool while it is idle: one idle connection is left
        await until(lambda: sum(map(len, pool._idle.values())) == 1, "the closed connection dropped")
        assert await fetch(pool, server.url) == b"{}"  # on the connection still open
    assert server.connections == 2


async def test_a_malformed_answer_is_a_protocol_error_at_once_and_closed(serve: Serve, pool: Pool) -> None:
    # The engine sends what is not HTTP mid-answer and keeps the connection open: the reader must get
    # the ProtocolError then (not wait for a close that never comes), and the engine see its
    # connection go.
    closed = asyncio.Event()

    async def bad_chunk_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")  # not a chunk size
        await writer.drain()
        await reader.read()  # b"" once the pool closes the connection
        closed.set()

    server = await serve(bad_chunk_then_wait)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        with pytest.raises(ProtocolError):
            await resp.read()
        resp.close()
        await closed.wait()


async def test_a_body_cut_short_of_its_content_length_is_a_protocol_error(serve: Serve, pool: Pool) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n{"a"')
        await writer.drain()

    server = await serve(short)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        with pytest.raises(ProtocolError):
            await resp.read()  # never a short body passed on as the whole answer
        resp.close()
        assert (await resp.readany(), await resp.read()) == (b"", b"")  # a closed answer reads as ended


async def test_connections_idle_past_the_timeout_are_closed_when_another_is_given_back(serve: Serve) -> None:
    # A burst opened two connections; the next request takes one and holds it past the idle timeout.
    # When it is given back, the other one, idle all that time, is closed then (not left open until
    # the engine closes it), and the one given back is kept.
    release = asyncio.Event()
    ended = 0

    async def held_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal ended
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                ended += 1
                return
            await release.wait()
            writer.write(OK)

    server = await serve(held_answers)
    pool = Pool(connect_timeout=5, idle_timeout=0.5)
    async with asyncio.timeout(5):
        burst = [asyncio.create_task(fetch(pool, server.url)) for _ in range(2)]
        await until(lambda: server.connections == 2, "two connections")
        release.set()
        assert await asyncio.gather(*burst) == [b"{}"] * 2
        release.clear()
        held = asyncio.create_task(fetch(pool, server.url))
        await asyncio.sleep(0.7)  # the idle timeout passes: the subject of the test, not a wait for an event
        release.set()
        assert await held == b"{}"
        await until(lambda: ended == 1, "the connection idle past the timeout closed")
        assert sum(map(len, pool._idle.values())) == 1 and server.connections == 2
    await pool.close()


async def test_a_body_is_read_ahead_of_a_reader_that_has_not_asked_yet(serve: Serve, pool: Pool) -> None:
    # Below the high-water mark nothing pauses: what the engine sends while nobody reads (a relay
    # writing to its client) is taken in, and the next read gets all of it at once.
    writers: list[asyncio.StreamWriter] = []

    async def first_part(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        writers.append(writer)  # the test writes the rest once the first chunk is in
        await reader.read()

    server = await serve(first_part)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        await until(lambda: resp.buffered, "the first chunk")
        writers[0].write(b"2\r\nde\r\n0\r\n\r\n")
        await until(lambda: resp._conn.complete, "the rest of the body, taken in while nobody reads")
        assert await resp.readany() == b"abcde"
        resp.close()


async def test_a_whole_read_stops_at_its_bound_and_the_connection_is_closed(serve: Serve, pool: Pool) -> None:
    # An answer read whole was held whole, however large: a body without end (chunked, or a declared
    # length never reached) grew the gateway's memory until the response timeout (300 s).
    limit = 256 << 10
    closed: list[str] = []

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        piece = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        try:
            while True:  # until the client goes
                writer.write(piece)
                await writer.drain()
        except ConnectionError:
            closed.append("endless")

    async def declared(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (limit + 1))
        await writer.drain()
        await reader.read()  # no body byte is sent: the declared length alone refuses it
        closed.append("declared")

    for handler in (endless, declared):
        server = await serve(handler)
        async with asyncio.timeout(5):
            resp = await pool.post(server.url, "/v1/x", b"{}", {})
            with pytest.raises(TooLarge):
                await resp.read(limit)
            resp.close()
            await until(lambda h=handler: h.__name__ in closed, "the engine to see its connection closed")

    # At the bound, the whole answer.
    async def exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % limit + b"y" * limit)
        await writer.drain()

    server = await serve(exact)
    resp = await pool.post(server.url, "/v1/x", b"{}", {})
    assert len(await resp.read(limit)) == limit
    resp.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (PEM files: the certificate, the key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replica")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_an_https_replica_is_spoken_to_over_tls_and_its_certificate_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server = await asyncio.start_server(keep_alive, "127.0.0.1", 0, ssl=context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with asyncio.timeout(5):
            untrusting = Pool(connect_timeout=5)
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # not this host's trust store
                await untrusting.post(url, "/v1/x", b"{}", {})
            await untrusting.close()
            monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the trust store the default context reads
            trusting = Pool(connect_timeout=5)
            assert await fetch(trusting, url) == b"{}"
            await trusting.close()
    finally:
        server.close()


async def test_an_empty_body_reads_as_empty(serve: Serve, pool: Pool) -> None:
    server = await serve(answering(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"))
    async with asyncio.timeout(5):
        assert await fetch(pool, server.url) == b""  # whole with its headers: read without waiting
        assert await fetch(pool, server.url) == b""  # and on the kept connection
    assert server.connections == 1


async def test_a_sink_gets_the_chunks_of_one_read_at_once_and_what_it_declines_waits_for_read(
    serve: Serve, pool: Pool
) -> None:
    gates = [asyncio.Event(), asyncio.Event()]

    async def two_writes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        # Each write one segment on loopback, so one read: several chunks in it.
        for gate, part in zip(gates, (b"1\r\na\r\n2\r\nbc\r\n", b"1\r\nd\r\n1\r\ne\r\n0\r\n\r\n"), strict=True):
            await gate.wait()
            writer.write(part)
            await writer.drain()

    taken: list[bytes] = []

    def sink(data: bytes) -> bool:
        taken.append(data)
        return data != b"de"

    server = await serve(two_writes)
    async with asyncio.timeout(5):
        resp = await pool.post(server.url, "/v1/x", b"{}", {})
        resp.follow(sink)
        gates[0].set()
        await until(lambda: taken == [b"abc"], "the first read's chunks, in one call")
        gates[1].set()
        assert await resp.readany() == b"de"  # declined: kept, in order, for read; the sink unset
        assert taken == [b"abc", b"de"] and not resp.following
        assert await resp.readany() == b""
        resp.close()
