"""The README's Quick start and the CI run the same test command; the README stays short."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def quick_start_commands() -> list[str]:
    text = read("README.md").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_quick_start_test_command():
    ci = re.search(r'^cmd="(.*)"$', read(".ci", "run"), re.M).group(1)
    commands = quick_start_commands()
    assert commands == ["pip install -e . && python -m jaxfair.generate", ci]
    assert ci == "pip install -e '.[test]' && python -m pytest -q"


def test_readme_is_short_and_links_only_into_the_repository():
    text = read("README.md")
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert "://" not in target, target
        path = target.split("#")[0]
        assert os.path.exists(os.path.join(ROOT, path)), target
