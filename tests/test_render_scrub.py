"""The message scrubber removes secret values, never the placeholders a fix command shows."""

from __future__ import annotations

from shared.render import scrub_text


def test_placeholders_in_fix_commands_survive_and_values_do_not() -> None:
    command = "kubectl create secret docker-registry regcred --docker-password=<password>"
    assert scrub_text(command) == command
    assert scrub_text("--docker-password=&lt;password&gt;") == "--docker-password=&lt;password&gt;"
    assert scrub_text("--docker-password=hunter2-canary") == "--docker-password=[redacted]"
    assert "s3cret" not in scrub_text("AccountKey=s3cretkey==;EndpointSuffix=x")
    assert "canary-value" not in scrub_text("retry with canary-value now", secrets=["canary-value"])
