"""The `cadre` command line and its views: status tree, live watch, Markdown report, transcripts.

May import every production room. The demo/local room (`orchestrator.local`) is imported only inside
the `cadre demo`, `cadre up` and `cadre sample-repo` commands.
"""
