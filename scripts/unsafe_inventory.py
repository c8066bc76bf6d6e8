#!/usr/bin/env python3
"""Checks the unsafe inventory in SECURITY.md against the code.

Every `unsafe` block, `unsafe fn` and `unsafe impl` in src/ (test modules and doc comments
excluded) must carry a `// SAFETY:` comment (blocks and impls) or a `# Safety` doc section
(functions), and SECURITY.md's inventory table must list each enclosing function with its
count of blocks, and each `unsafe impl` (as `impl Trait for Type`) with a count of 1.

    scripts/unsafe_inventory.py              check; exit 1 with a list of differences
    scripts/unsafe_inventory.py --list       print the inventory as found in the code
    scripts/unsafe_inventory.py --self-test  check the scanner itself on small examples
"""

import collections
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
FN_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+(\$?\w+)")
IMPL_RE = re.compile(r"^\s*unsafe\s+impl\b(?:\s*<[^>]*>)?\s+(.+?)\s*(?:\{.*)?$")
ROW_RE = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|\s*(\d+)\s*\|")


def code_lines(path):
    """Yields (line number, text) of non-test, non-doc code lines."""
    in_tests = False
    tests_depth = 0
    depth = 0
    pending_cfg_test = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#[cfg(test)]"):
            pending_cfg_test = True
            continue
        if pending_cfg_test and stripped.startswith("mod "):
            in_tests, tests_depth = True, depth
        pending_cfg_test = pending_cfg_test and stripped.startswith("#[")
        depth += line.count("{") - line.count("}")
        if in_tests:
            if depth <= tests_depth:
                in_tests = False
            continue
        if stripped.startswith("//"):
            continue
        yield number, line


def scan(root=ROOT):
    """Returns ({(file, function): count}, [problems])."""
    inventory = collections.Counter()
    problems = []
    for path in sorted((root / "src").rglob("*.rs")):
        rel = path.relative_to(root).as_posix()
        lines = path.read_text().splitlines()
        function = "(module)"
        for number, line in code_lines(path):
            match = FN_RE.match(line)
            if match:
                # Functions a macro writes are named by a metavariable: file them under the macro.
                function = "macro-generated" if match.group(1).startswith("$") else match.group(1)
            impl = IMPL_RE.match(line)
            if impl:
                name = "impl " + re.sub(r"\s+", " ", impl.group(1))
                inventory[(rel, name)] += 1
                if not has_safety_comment(lines, number - 1):
                    problems.append(f"{rel}:{number}: unsafe {name} has no // SAFETY: comment")
            if re.search(r"\bunsafe\s*\{", line):
                inventory[(rel, function)] += 1
                if not has_safety_comment(lines, number - 1):
                    problems.append(f"{rel}:{number}: unsafe block in {function} has no // SAFETY: comment")
            if re.search(r"\bunsafe\s+(?:extern\s+\"C\"\s+)?fn\s+\w", line) and "$" not in line:
                if not has_safety_doc(lines, number - 1):
                    problems.append(f"{rel}:{number}: unsafe fn {function} has no '# Safety' doc section")
    return inventory, problems


def has_safety_comment(lines, index):
    """A `// SAFETY:` comment on the lines just above (or on the same line)."""
    if "SAFETY:" in lines[index]:
        return True
    i = index - 1
    while i >= 0 and lines[i].strip().startswith("//"):
        if "SAFETY:" in lines[i]:
            return True
        i -= 1
    # Allow the comment to sit above the statement that contains the block.
    while i >= 0 and index - i < 6 and not lines[i].strip().endswith((";", "}")):
        if "SAFETY:" in lines[i]:
            return True
        i -= 1
    return False


def has_safety_doc(lines, index):
    i = index - 1
    while i >= 0 and (lines[i].strip().startswith(("///", "#["))):
        if "# Safety" in lines[i]:
            return True
        i -= 1
    return False


def documented():
    rows = collections.Counter()
    for line in (ROOT / "SECURITY.md").read_text().splitlines():
        match = ROW_RE.match(line)
        if match:
            rows[(match.group(1), match.group(2))] += int(match.group(3))
    return rows


SELF_TEST_SOURCE = """\
struct Documented(*mut u8);
// SAFETY: never dereferenced.
unsafe impl Send for Documented {}

struct Bare(*mut u8);
unsafe impl Sync for Bare {}

unsafe impl<T: Copy> Send for Generic<T> {}

fn f(p: *const u8) -> u8 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *p }
}

#[cfg(test)]
mod tests {
    unsafe impl Send for InTests {}
}
"""


def self_test():
    """The scanner counts blocks and `unsafe impl`s and flags those without a comment."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "src").mkdir()
        (root / "src" / "a.rs").write_text(SELF_TEST_SOURCE)
        inventory, problems = scan(root)
    expected = {
        ("src/a.rs", "impl Send for Documented"): 1,
        ("src/a.rs", "impl Sync for Bare"): 1,
        ("src/a.rs", "impl Send for Generic<T>"): 1,
        ("src/a.rs", "f"): 1,
    }
    failures = []
    if dict(inventory) != expected:
        failures.append(f"inventory {dict(inventory)} != {expected}")
    flagged = sorted(p.split(": ", 1)[1] for p in problems)
    want = ["unsafe impl Send for Generic<T> has no // SAFETY: comment", "unsafe impl Sync for Bare has no // SAFETY: comment"]
    if flagged != want:
        failures.append(f"problems {flagged} != {want}")
    for failure in failures:
        print(f"unsafe inventory self-test: {failure}")
    if not failures:
        print("unsafe inventory self-test: ok")
    return 1 if failures else 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
    inventory, problems = scan()
    if "--list" in sys.argv:
        for (rel, function), count in sorted(inventory.items()):
            print(f"| `{rel}` | `{function}` | {count} |")
        return 0
    rows = documented()
    for key in sorted(set(inventory) | set(rows)):
        if inventory[key] != rows[key]:
            problems.append(
                f"SECURITY.md inventory: {key[0]} {key[1]}: documented {rows[key]}, found {inventory[key]}"
            )
    for problem in problems:
        print(problem)
    total = sum(inventory.values())
    if problems:
        print(f"unsafe inventory: {len(problems)} problem(s)")
        return 1
    impls = sum(count for (_, name), count in inventory.items() if name.startswith("impl "))
    print(
        f"unsafe inventory: {total - impls} unsafe blocks and {impls} unsafe impls "
        f"in {len(inventory)} items, all documented"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
