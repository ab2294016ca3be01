"""The redaction of upstream text (providers/adapters/errors.py ``redact``): the config's own key,
whatever its shape, as well as anything shaped like a provider key. Written for the mutation check
(scripts/mutation.py): tests/test_registry.py covers the key shapes, these the config's secret."""

from providers.adapters.errors import redact

SECRET = "plain-Secret-without-a-vendor-prefix"


def test_the_configs_own_key_is_redacted_wherever_it_appears():
    text = f"key {SECRET} was refused; retry with {SECRET}?"
    assert redact(text, SECRET) == "key [redacted] was refused; retry with [redacted]?"


def test_without_a_secret_only_key_shaped_text_is_redacted():
    # No secret given: the text is kept as it is, down to a literal "XXXX" (no default stands in for one).
    assert redact("nothing secret here: XXXX") == "nothing secret here: XXXX"
    assert redact("nothing secret here", "") == "nothing secret here"


def test_the_secret_and_key_shapes_are_both_redacted():
    assert redact(f"{SECRET} and sk-ant-AbCd1234", SECRET) == "[redacted] and [redacted]"
