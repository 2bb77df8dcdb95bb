"""A toy command, as ppshitu/commands/<name>.py is: main(argv) returns what a test inspects, cli(argv) runs it
under run_main."""
import argparse

from ppshitu.cli import run_main

RUNS = []


def main(argv=None):
    parser = argparse.ArgumentParser(description="a toy command")
    parser.add_argument("word")
    args = parser.parse_args(argv)
    RUNS.append(args.word)
    return args.word


def cli(argv=None):
    run_main(lambda: main(argv))
