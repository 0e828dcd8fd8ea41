"""The command line and the console: ``batos VERB`` and ``batos console``.

``cli`` parses and dispatches; one ``*_cmd`` module per group of verbs, each
verb a thin function that parses its arguments and calls an importable one
in the packages below; ``console*`` is the interactive REPL on the live
image; ``ui`` holds the shared rich output.
"""
