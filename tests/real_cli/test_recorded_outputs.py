"""Outputs recorded from the real CLIs (scripts/install-real-clis.sh, 2026-11-30, as root,
no login, no network), read by the presets' parsers: these run without the CLIs."""

from __future__ import annotations

from pathlib import Path

from tinytown.services.agentcli.report import Outcome
from tinytown.services.config import TownConfig

#: gemini 0.61.0, `gemini --output-format json --approval-mode yolo` with no auth method,
#: in a folder it does not trust: everything on stderr, the error pretty-printed; exit 41.
GEMINI_NO_AUTH_STDERR = """\
YOLO mode is enabled. All tool calls will be automatically approved.
Approval mode overridden to "default" because the current folder is not trusted.
{
  "session_id": "8289bc23-9bbf-4c2e-989d-9f375d666c8f",
  "error": {
    "type": "Error",
    "message": "Please set an Auth method in your /tmp/h/.gemini/settings.json or specify one of the following environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA",
    "code": 41
  }
}
"""  # noqa: E501


def test_gemini_without_auth_is_setup_in_its_own_words(tmp_path: Path) -> None:
    spec = TownConfig.create(tmp_path, "t").cli_spec("gemini")
    report = spec.read(41, False, "", GEMINI_NO_AUTH_STDERR)
    assert report.outcome is Outcome.SETUP
    assert report.message.startswith("Please set an Auth method in your /tmp/h/.gemini/")
    assert report.message.endswith("GOOGLE_GENAI_USE_GCA")  # the sentence, not a JSON line
    assert report.session_id == "8289bc23-9bbf-4c2e-989d-9f375d666c8f"
