"""The committed rules, runbooks and dashboards are exactly what the sources generate."""

from __future__ import annotations

from pathlib import Path

from observability import generate


def test_generated_files_are_up_to_date() -> None:
    stale = generate.stale(generate.render_all())
    assert not stale, (
        "generated files out of date: run `python -m observability.generate`\n"
        + "\n".join(str(p) for p in stale)
    )


def test_a_hand_edit_is_detected(tmp_path: Path) -> None:
    rendered = generate.render_all()
    some_path = next(iter(rendered))
    copy = tmp_path / some_path.name
    copy.write_text(rendered[some_path] + "# edited by hand\n")
    assert generate.changed({copy: rendered[some_path]}) == [copy]
    copy.write_text(rendered[some_path])
    assert generate.changed({copy: rendered[some_path]}) == []
