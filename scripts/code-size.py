#!/usr/bin/env python3
"""Fails when a source file of crates/*/src has more than 1000 lines, or a function more than
150, unless docs/design.md §6 ("Known exceptions") names the file (or `file: function`) with a
reason. Unit-test modules (`#[cfg(test)] mod tests` at the end of a file) do not count.

Function lengths are measured from the `fn` line to its closing brace, with braces inside
string and character literals and comments ignored.
"""
import os
import re
import sys

FILE_LINES_MAX = 1000
FN_LINES_MAX = 150
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FN = re.compile(r"\s*(pub(\([a-z ]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def code_of(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    i = line.find("//")
    return line if i < 0 else line[:i]


def without_tests(lines):
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]") and i + 1 < len(lines) and lines[i + 1].startswith("mod tests"):
            return lines[:i]
    return lines


def long_functions(lines):
    open_fns, depth = [], 0
    for i, raw in enumerate(lines):
        line = code_of(raw)
        m = FN.match(line)
        if m:
            open_fns.append((m.group(6), i, depth))
            if line.rstrip().endswith(";"):  # a declaration without a body
                open_fns.pop()
        for ch in line:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if open_fns and depth == open_fns[-1][2]:
                    name, start, _ = open_fns.pop()
                    if i - start + 1 > FN_LINES_MAX:
                        yield name, i - start + 1


def exceptions():
    text = open(os.path.join(ROOT, "docs/design.md"), encoding="utf-8").read()
    section = text.split("## 6. Known exceptions", 1)[-1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def main():
    allowed = exceptions()
    problems = []
    for crate in sorted(os.listdir(os.path.join(ROOT, "crates"))):
        src = os.path.join(ROOT, "crates", crate, "src")
        for dirpath, _, files in os.walk(src):
            for f in sorted(files):
                if not f.endswith(".rs"):
                    continue
                path = os.path.relpath(os.path.join(dirpath, f), ROOT)
                lines = without_tests(open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n"))
                if len(lines) > FILE_LINES_MAX and path not in allowed:
                    problems.append(f"{path}: {len(lines)} lines (at most {FILE_LINES_MAX})")
                for name, n in long_functions(lines):
                    if f"{path}: {name}" not in allowed:
                        problems.append(f"{path}: fn {name} has {n} lines (at most {FN_LINES_MAX})")
    for p in problems:
        print(f"code-size: {p}; split it, or name it in docs/design.md §6 with the reason", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
