"""A plain-text CLI that prints the prompt it was given: on stdin, as `--prompt TEXT`,
or in `--prompt-file PATH` (whose mode it reports); `--out PATH` writes the answer there."""

import os
import sys

from _report import file_facts, option, report


def stdin_is_devnull():
    mine, null = os.fstat(0), os.stat(os.devnull)
    return (mine.st_dev, mine.st_ino) == (null.st_dev, null.st_ino)


def main():
    args = sys.argv[1:]
    if "--prompt" in args:
        prompt, source = option(args, "--prompt"), "argument"
    elif "--prompt-file" in args:
        path = option(args, "--prompt-file")
        with open(path, encoding="utf-8") as handle:
            prompt, source = handle.read(), "file"
        report(prompt_file=file_facts(path))
    else:
        prompt, source = sys.stdin.read(), "stdin"
    if source != "file":
        report(prompt=prompt, stdin_is_devnull=stdin_is_devnull())
    answer = f"[{source}] {prompt}"
    if "--out" in args:
        with open(option(args, "--out"), "w", encoding="utf-8") as handle:
            handle.write(answer)
        print("(answer written to the output file)")
    else:
        print(answer)
    return int(os.environ.get("FAKE_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
