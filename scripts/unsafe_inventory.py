#!/usr/bin/env python3
"""Checks the unsafe inventory in SECURITY.md against the code.

Every `unsafe` block, `unsafe fn` and `unsafe impl` in src/ (test modules and doc comments
excluded) must carry a `// SAFETY:` comment (blocks) or a `# Safety` doc section (functions),
and SECURITY.md's inventory table must list each enclosing function with the right count.

    scripts/unsafe_inventory.py          check; exit 1 with a list of differences
    scripts/unsafe_inventory.py --list   print the inventory as found in the code
"""

import collections
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FN_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+(\$?\w+)")
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


def scan():
    """Returns ({(file, function): count}, [problems])."""
    inventory = collections.Counter()
    problems = []
    for path in sorted((ROOT / "src").rglob("*.rs")):
        rel = path.relative_to(ROOT).as_posix()
        lines = path.read_text().splitlines()
        function = "(module)"
        for number, line in code_lines(path):
            match = FN_RE.match(line)
            if match:
                # Functions a macro writes are named by a metavariable: file them under the macro.
                function = "macro-generated" if match.group(1).startswith("$") else match.group(1)
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


def main():
    inventory, problems = scan()
    if "--list" in sys.argv:
        for (rel, function), count in sorted(inventory.items()):
            print(f"| `{rel}` | `{function}` | {count} |")
        return 0
    rows = documented()
    for key in sorted(set(inventory) | set(rows)):
        if inventory[key] != rows[key]:
            problems.append(
                f"SECURITY.md inventory: {key[0]} {key[1]}: documented {rows[key]}, found {inventory[key]} unsafe block(s)"
            )
    for problem in problems:
        print(problem)
    total = sum(inventory.values())
    if problems:
        print(f"unsafe inventory: {len(problems)} problem(s)")
        return 1
    print(f"unsafe inventory: {total} unsafe blocks in {len(inventory)} functions, all documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
