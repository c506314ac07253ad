import random

from llmload.prompts import Conversation, system_prompts, words


def test_system_prompts_are_identical_in_every_process() -> None:
    # Shared prefixes only exercise the prefix cache if every locust process sends the same ones.
    assert system_prompts(3, 50) == system_prompts(3, 50)
    assert len(set(system_prompts(3, 50))) == 3
    assert len(system_prompts(1, 50)[0].split()) == 50 + 5  # "You are assistant number 0." + 50 words


def test_words_have_the_requested_count() -> None:
    assert len(words(random.Random(0), 37).split()) == 37


def test_a_conversation_resends_its_history_after_the_shared_system_prompt() -> None:
    conversation = Conversation(system="sys", turns_left=2, max_context_words=1000)
    first = conversation.ask("q1")
    conversation.answer("a1")
    second = conversation.ask("q2")
    assert first == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"}]
    assert [m["content"] for m in second] == ["sys", "q1", "a1", "q2"]
    assert conversation.finished


def test_old_turns_are_dropped_to_fit_the_context_but_the_system_prompt_stays() -> None:
    conversation = Conversation(system="s " * 10, turns_left=10, max_context_words=40)
    for turn in range(5):
        conversation.ask(f"question {turn} " + "w " * 8)
        conversation.answer("answer " * 9)
    messages = conversation.ask("last " * 10)
    assert messages[0]["role"] == "system"
    assert sum(len(m["content"].split()) for m in messages) <= 40
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]  # still alternating
