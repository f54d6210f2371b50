"""Every public throwing Swift API says what it throws.

Runs scripts/check-throws-docs.sh over Sources/: each `public` (or `open`) throwing func or init, and each
throwing requirement of a public protocol, must carry a `- Throws:` line in its doc comment. The script prints
every declaration that lacks one.
"""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_check(root=None):
    args = [os.path.join(REPO, "scripts", "check-throws-docs.sh")] + ([root] if root else [])
    return subprocess.run(args, capture_output=True, text=True)


def test_every_public_throwing_api_documents_what_it_throws():
    result = run_check()
    assert result.returncode == 0, "declarations without `- Throws:`:\n" + result.stdout + result.stderr


def test_the_check_finds_an_undocumented_throwing_api(tmp_path):
    # The check itself: a public throwing func without `- Throws:` (and a protocol requirement) is reported;
    # documented ones, rethrows and private ones are not.
    source = tmp_path / "Sources" / "M"
    source.mkdir(parents=True)
    (source / "A.swift").write_text(
        "public protocol P {\n"
        "    /// Reads.\n"
        "    func read() throws -> Int\n"
        "    /// Writes.\n"
        "    /// - Throws: an error when it fails.\n"
        "    func write() throws\n"
        "}\n"
        "public struct S {\n"
        "    /// Loads.\n"
        "    @discardableResult\n"
        "    public func load(\n"
        "        path: String\n"
        "    ) throws(MyError) -> Int { 0 }\n"
        "    /// - Throws: ``MyError`` when the file is missing.\n"
        "    public init(path: String) throws {}\n"
        "    public func each(_ body: () throws -> Void) rethrows {}\n"
        "    private func hidden() throws {}\n"
        "}\n"
    )
    result = run_check(str(tmp_path / "Sources"))
    assert result.returncode == 1
    reported = sorted(line.split(": ", 1)[1] for line in result.stdout.splitlines())
    assert reported == ["func load", "func read"], result.stdout
