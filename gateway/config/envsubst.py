"""`${VAR}` / `${VAR:-default}` / `${file:/path}` interpolation for provider secrets and URLs.

`${file:/path}` reads a file (a Kubernetes or Docker secret mounted as a file), its trailing
newline stripped; it is read again on every compile, so on every reload. The environment a
bundle sees is the process's, with an optional env file (`--env-file`) merged over it, also read
again on every reload (`read_env_file`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FILE = re.compile(r"\$\{file:([^}]*)\}")
_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")

FileReader = Callable[[str], str]  # absolute path -> content; raises MissingFile


class MissingEnv(Exception):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"environment variable {name} is not set")


class MissingFile(Exception):
    """A `${file:...}` that cannot be read; the message never quotes the content."""

    def __init__(self, path: str, reason: str = "not found") -> None:
        self.path = path
        super().__init__(f"file {path} {reason}")


class BadReference(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(
            f'cannot interpolate "{text}": write ${{VAR}}, ${{VAR:-default}} or ${{file:/absolute/path}} '
            "(defaults do not nest)"
        )


def read_secret_file(path: str) -> str:
    """A secret file's content without its trailing newline (what `echo key > file` adds)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingFile(path) from None
    except IsADirectoryError:
        raise MissingFile(path, "is a directory") from None
    except PermissionError:
        raise MissingFile(path, "is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise MissingFile(path, "is not UTF-8 text") from None
    except OSError as exc:
        raise MissingFile(path, f"cannot be read ({exc.strerror})") from None
    value = text.rstrip("\r\n")
    if not value:
        raise MissingFile(path, "is empty")
    return value


def file_references(text: str) -> list[str]:
    return [m.group(1) for m in _FILE.finditer(text)]


def _check(text: str) -> None:
    rest = _FILE.sub("", text)
    # `${A:-${B}}` would otherwise give the literal `${B}`, and `${A` itself: both are mistakes.
    if "${" in _VAR.sub("", rest) or any("${" in (m.group(2) or "") for m in _VAR.finditer(rest)):
        raise BadReference(text)
    if any(not path.startswith("/") for path in file_references(text)):
        raise BadReference(text)


def interpolate(
    text: str,
    env: Mapping[str, str],
    *,
    allow_missing: bool = False,
    read_file: FileReader = read_secret_file,
) -> str:
    _check(text)

    def replace_file(match: re.Match[str]) -> str:
        path = match.group(1)
        try:
            return read_file(path)
        except MissingFile:
            if allow_missing:
                return f"<file:{path}>"
            raise

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if allow_missing:
            return f"<{name}>"
        raise MissingEnv(name)

    # Variables first, on the text outside file references (a file's content is not re-read).
    parts, last = [], 0
    for m in _FILE.finditer(text):
        parts.append(_VAR.sub(replace, text[last : m.start()]))
        parts.append(replace_file(m))
        last = m.end()
    parts.append(_VAR.sub(replace, text[last:]))
    return "".join(parts)


def has_missing(text: str, env: Mapping[str, str], read_file: FileReader = read_secret_file) -> bool:
    """Whether `text` refers to a variable that is unset or empty and has no default, or to a
    file that cannot be read (under `allow_missing` its value is a placeholder, not what the
    gateway would use)."""
    if any(not env.get(m.group(1)) and m.group(2) is None for m in _VAR.finditer(_FILE.sub("", text))):
        return True
    for path in file_references(text):
        try:
            read_file(path)
        except MissingFile:
            return True
    return False


def referenced_values(
    text: str, env: Mapping[str, str], read_file: FileReader = read_secret_file
) -> list[str]:
    """The environment values and file contents `text` refers to: secrets, whatever field they
    end up in."""
    values = [value for m in _VAR.finditer(_FILE.sub("", text)) if (value := env.get(m.group(1)))]
    for path in file_references(text):
        with contextlib.suppress(MissingFile):
            values.append(read_file(path))
    return values


class EnvFileError(Exception):
    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_env_file(path: str | Path) -> dict[str, str]:
    """`NAME=value` lines (`export ` allowed, `#` comments, blank lines, values optionally in
    single or double quotes, no expansion). A bad line is reported by number, never quoted: it
    may hold a secret."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(name, None, "env file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise EnvFileError(name, None, f"cannot read the env file ({reason})") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise EnvFileError(name, number, "expected NAME=value (a shell variable name)")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif value[:1] in "\"'":
            raise EnvFileError(name, number, f"{key}: unterminated quote")
        else:
            value = value.split(" #", 1)[0].rstrip()  # an inline comment after an unquoted value
        values[key] = value
    return values
