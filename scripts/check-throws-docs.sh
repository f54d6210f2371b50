#!/usr/bin/env bash
# Checks that every public throwing API documents what it throws: each `public`/`open` func or init whose
# signature says `throws` (or `throws(E)`), and each throwing requirement of a public protocol, in
# Sources/, has a `- Throws:` line in its doc comment. `rethrows` functions only pass on their closure's
# errors and are not checked. Package-level (`package`) functions are checked too when they are listed in
# PACKAGE_FILES below (APIs other modules of the package build on).
#
# Usage: scripts/check-throws-docs.sh [source-root]   (default: Sources next to this script)
# Prints each declaration without `- Throws:` as `path:line: name` and exits 1 when there is any.
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)/Sources}"
exec python3 - "$root" <<'PY'
import os, re, sys

root = sys.argv[1]
# Files whose `package` throwing functions are APIs used across modules (the CLI, tests and benchmarks
# call them): they are held to the same rule as public ones.
PACKAGE_FILES = {
    "HPS/Cache/EmbeddingCache.swift",
    "HPS/Storage/Database.swift",
}
decl = re.compile(r"^\s*(?:@[\w.]+(?:\([^)]*\))?\s+)*((?:\w+\s+)*)(func\s+[^\s(<]+|init[?!]?)\s*[(<]")
protocol_start = re.compile(r"^\s*(?:public|open)\s+protocol\s+\w+")


def depth0(text):
    """The signature with everything inside parentheses, brackets and angle brackets removed."""
    out, depth = [], 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def signature(lines, i):
    """The declaration's text from line i up to its body's `{` (or the end of a protocol requirement)."""
    text, depth = "", 0
    for j in range(i, min(i + 40, len(lines))):
        for ch in lines[j].split("//")[0]:
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "{" and depth == 0:
                return text
            text += ch
        text += " "
        if depth == 0:
            following = next((l.strip() for l in lines[j + 1:] if l.strip()), "")
            if not following.startswith(("throws", "rethrows", "->", "async", "where")):
                return text
    return text


def documented(lines, i):
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("@"):
        j -= 1
    while j >= 0 and (lines[j].strip().startswith("///") or lines[j].strip().startswith("// @")):
        if "- Throws:" in lines[j]:
            return True
        j -= 1
    return False


missing = []
for dirpath, _, files in os.walk(root):
    for name in sorted(files):
        if not name.endswith(".swift"):
            continue
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, root)
        lines = open(path, encoding="utf-8").read().split("\n")
        depth, protocol_depth = 0, None
        for i, line in enumerate(lines):
            code = line.split("//")[0]
            if protocol_depth is None and protocol_start.match(code):
                protocol_depth = depth
            m = decl.match(code)
            if m:
                modifiers = m.group(1).split()
                in_protocol = protocol_depth is not None and depth == protocol_depth + 1
                checked = (
                    "public" in modifiers or "open" in modifiers
                    or ("package" in modifiers and rel in PACKAGE_FILES)
                    or (in_protocol and not {"private", "fileprivate", "internal"} & set(modifiers))
                )
                if checked and "private" not in modifiers:
                    sig = depth0(signature(lines, i))
                    if re.search(r"(?<![\w])throws\b", sig) and not documented(lines, i):
                        missing.append(f"{os.path.join(os.path.basename(root), rel)}:{i + 1}: {m.group(2)}")
            depth += code.count("{") - code.count("}")
            if protocol_depth is not None and depth <= protocol_depth and "}" in code:
                protocol_depth = None

for entry in missing:
    print(entry)
if missing:
    print(f"{len(missing)} public throwing declarations without `- Throws:` in their doc comment", file=sys.stderr)
    sys.exit(1)
print("every public throwing declaration documents what it throws")
PY
