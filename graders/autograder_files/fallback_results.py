"""Write a valid Gradescope results.json when the grader did not (standard library only).

What the grader wrote is kept only if it is valid: strict UTF-8 JSON under 1 MB, finite numbers, no
unpaired surrogates, the shape of Gradescope's format. A partial file (the grader was killed while
writing it), a corrupt one or a symlink is replaced, atomically, by a 0 with a message.
"""
import argparse
import json
import math
import os
import sys
import tempfile

MAX_BYTES = 1000000
VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")
FORMATS = ("text", "html", "simple_format", "md", "ansi")
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
            "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
             "visibility", "extra_data"}


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def text(value):
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plain_data(value, depth=0):
    """Strings that UTF-8 can hold, finite numbers, at most 64 levels deep."""
    if depth > 64:
        return False
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return all(text(k) and plain_data(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_data(v, depth + 1) for v in value)
    return value is None or isinstance(value, bool) or number(value)


def valid_test(test):
    return (isinstance(test, dict) and set(test) <= TEST_KEYS and text(test.get("name"))
            and number(test.get("score")) and number(test.get("max_score"))
            and test.get("status", "passed") in ("passed", "failed")
            and text(test.get("output", "")) and text(test.get("number", ""))
            and test.get("visibility", "visible") in VISIBILITY
            and all(test.get(key, "text") in FORMATS for key in ("name_format", "output_format"))
            and isinstance(test.get("tags", []), list) and all(text(t) for t in test.get("tags", []))
            and isinstance(test.get("extra_data", {}), dict))


def refuse(constant):
    raise ValueError("not JSON: " + constant)


def valid(path):
    """Whether ``path`` is a results.json Gradescope accepts (a regular file, not a symlink)."""
    try:
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) >= MAX_BYTES:
            return False
        with open(path, "rb") as handle:
            data = json.loads(handle.read(MAX_BYTES).decode("utf-8"), parse_constant=refuse)
    except Exception:  # noqa: BLE001 - unreadable, not UTF-8, not JSON, NaN, nested too deeply: all invalid
        return False
    if not isinstance(data, dict) or not set(data) <= TOP_KEYS:
        return False
    tests = data.get("tests")
    return (number(data.get("score")) and number(data.get("execution_time")) and text(data.get("output"))
            and isinstance(tests, list) and all(valid_test(t) for t in tests)
            and all(data.get(key, "visible") in VISIBILITY for key in ("visibility", "stdout_visibility"))
            and all(data.get(key, "text") in FORMATS for key in ("output_format", "test_output_format", "test_name_format"))
            and isinstance(data.get("extra_data", {}), dict) and isinstance(data.get("leaderboard", []), list)
            and plain_data(data))


def write_atomically(path, data):
    """A temporary file beside ``path`` (O_EXCL, never a symlink), fsync'ed, then renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=".results.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            json.dump(data, handle, indent=1, ensure_ascii=True, allow_nan=False)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        try:
            os.unlink(scratch)
        except OSError:
            pass
        raise


def read_config(path):
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except Exception:  # noqa: BLE001
        return {}
    return config if isinstance(config, dict) else {}


def fallback_results(config, status, elapsed):
    try:
        limit = int(config.get("hard_limit_seconds", 0))
    except (TypeError, ValueError):
        limit = 0
    try:
        seconds = float(elapsed)
    except ValueError:
        seconds = None  # unknown: a kill (137) is then taken for the time limit's
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        seconds = None
    if status == "124" or (status == "137" and (seconds is None or seconds >= limit - 30)):
        message = ("Grading did not finish within the autograder's time limit (%d minutes): does a cell train for a very "
                   "long time, or wait forever? Your notebook scored 0; run it top to bottom locally and resubmit."
                   % (limit // 60))
    elif status == "137":
        message = ("The grader was killed while grading your notebook (exit status 137, usually the container running out "
                   "of memory), so it scored 0. Make large arrays or models smaller if you have any; your instructor "
                   "has the details.")
    elif status == "0":
        message = ("The autograder finished but wrote no valid result for your notebook, so it scored 0. "
                   "This is not your mistake; your instructor has the details.")
    else:
        message = ("The autograder itself failed while grading your notebook (exit status %s), so it scored 0. "
                   "This is not your mistake; your instructor has the details." % (status or "unknown"))
    tests = []
    parts = config.get("parts")
    for part in parts if isinstance(parts, list) else []:
        try:
            pid, title, points = part
            points = float(points)
        except (TypeError, ValueError):
            continue
        if points and math.isfinite(points):
            tests.append({"name": "%s \u00b7 %s" % (pid, title), "score": 0.0, "max_score": points, "status": "failed",
                          "output": message, "visibility": "visible"})
    return {"score": 0.0, "execution_time": seconds or 0.0, "output": message, "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests}


def log_tail(path, limit=6000):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4 * limit))
            return handle.read().decode("utf-8", errors="replace")[-limit:]
    except (OSError, ValueError):
        return ""


def main():
    parser = argparse.ArgumentParser()
    for name in ("--results", "--config", "--status", "--log", "--elapsed"):
        parser.add_argument(name, default="")
    args = parser.parse_args()
    if valid(args.results):
        return 0
    write_atomically(args.results, fallback_results(read_config(args.config), args.status, args.elapsed))
    report = ("nbgrade fallback: the grader wrote no valid results.json (exit status %s); instructor detail:\n%s\n"
              % (args.status, log_tail(args.log)))
    try:  # stdout (instructors only) after results.json: an unprintable log never costs the results
        sys.stdout.buffer.write(report.encode("utf-8", errors="replace"))
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
