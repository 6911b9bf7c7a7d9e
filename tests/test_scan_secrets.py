"""``scripts/scan-secrets``: each kind of secret planted in a throwaway git repository is caught.

This repository scans clean.

The planted values are assembled at run time, so this file holds none of them whole (the scan
reads it too). The script is run as the test command runs it, a subprocess on a plain Python.
"""

from __future__ import annotations

import hashlib
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "scan-secrets"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def _scan(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *extra], capture_output=True, text=True, timeout=120
    )


def _random_token() -> str:
    """40 characters mixing cases and digits, as a generated API token looks."""
    rng = random.Random(17)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=40))


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# (file name, content, rule expected): one of each kind the scan knows.
PLANTED = [
    ("deploy/id_rsa", "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n", "private-key"),
    ("ops/ssh", "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n", "private-key"),
    ("aws.py", 'KEY = "' + "AKIA" + "Z7Q2W4E6R8T0Y1U3" + '"\n', "cloud-key"),
    ("ci.sh", "export GH=" + "ghp_" + "a1B2c3D4e5F6g7H8i9" + "J0k1L2m3N4o5P6q7R8" + "\n", "cloud-key"),
    ("slack.md", "token " + "xoxb-" + "123456789012-abcdefABCDEF\n", "cloud-key"),
    ("vigil.toml", '[vigil]\ndatabase_password = "' + "hunter2-" + 'clinic"\n', "config-password"),
    ("db.py", 'URL = "postgresql://vigil:' + "Tr0ub4dor" + '@db.hospital/vigil"\n', "url-credential"),
    ("deploy.yaml", "db:\n  password: " + "S3cr3t-" + "Pa55\n", "config-password"),
    ("notes.txt", "the token is " + _random_token() + " for now\n", "high-entropy"),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    return root


@pytest.mark.parametrize(("name", "content", "rule"), PLANTED, ids=[p[0] for p in PLANTED])
def test_each_planted_secret_is_caught_without_being_shown(repo: Path, name: str, content: str, rule: str) -> None:
    # Prepare
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(content)
    (repo / "README.md").write_text("nothing secret here\n")
    # Execute
    result = _scan(repo)
    # Assert
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{name}:" in result.stdout and f" {rule} " in result.stdout, result.stdout
    assert "README.md" not in result.stdout
    secretish = [w for w in content.split() if len(w) >= 12 and not w.startswith("-----")]
    assert not any(w.strip('"') in result.stdout for w in secretish), "the scan must not print the secret"


def test_committed_files_are_scanned_and_ignored_ones_are_not(repo: Path) -> None:
    # Prepare
    (repo / ".gitignore").write_text("var/\n")
    (repo / "var").mkdir()
    (repo / "var" / "local.toml").write_text('api_key = "' + "ignored-" + 'because-var"\n')
    (repo / "settings.ini").write_text("[db]\npassword = " + "committed-" + "value\n")
    _git(repo, "add", "settings.ini", ".gitignore")
    _git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "x")
    # Execute
    result = _scan(repo)
    # Assert
    assert result.returncode == 1
    assert "settings.ini:2: config-password" in result.stdout
    assert "var/local.toml" not in result.stdout


@pytest.mark.parametrize(
    "line",
    [
        'password_env = "PACS_PASSWORD"',  # names where the secret lives
        'token = ""',
        'client_secret = "${OIDC_SECRET}"',
        'url = "postgresql+psycopg://vigil:PASSWORD@db:5432/vigil"',  # a placeholder
        "url = f'postgresql://vigil:{password}@127.0.0.1/x'",
        "sha256 = " + "ab" * 32,  # a digest, not a key
        '"data": "' + "Q0FOQVJZLVBERi1PTkxZLVgzIFJlcG9ydCBmb3IgQ0FOQVJZ" + '"',  # base64 of text
        '"integrity": "sha512-' + "Ab1" * 20 + '=="',
    ],
)
def test_references_and_digests_are_not_findings(repo: Path, line: str) -> None:
    # Prepare
    (repo / "vigil.toml").write_text(line + "\n")
    # Execute
    result = _scan(repo)
    # Assert
    assert result.returncode == 0, result.stdout


def test_an_allow_listed_fixture_passes_and_a_stale_line_fails(repo: Path) -> None:
    # Prepare
    token = _random_token()
    (repo / "fixture.txt").write_text(token + "\n")
    allow = repo / "scripts" / "secrets-allowlist.txt"
    allow.parent.mkdir()
    allow.write_text(f"# reviewed\nhigh-entropy fixture.txt {_fingerprint(token)} a made-up token for a test\n")
    # Execute
    clean = _scan(repo)
    (repo / "fixture.txt").write_text("gone\n")
    stale = _scan(repo)
    # Assert
    assert clean.returncode == 0, clean.stdout
    assert stale.returncode == 1 and "allow-list line 2" in stale.stdout


def test_an_allow_list_line_without_a_reason_is_refused(repo: Path) -> None:
    # Prepare
    allow = repo / "list.txt"
    allow.write_text("high-entropy fixture.txt 0123456789abcdef\n")
    # Execute
    result = _scan(repo, "--allowlist", str(allow))
    # Assert
    assert result.returncode == 2
    assert "list.txt:1" in result.stderr


def test_this_repository_scans_clean() -> None:
    # Execute
    result = _scan(REPO)
    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no secrets found" in result.stdout
