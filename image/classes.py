"""Where a persisted class lives now: the rename map every image opens through.

A record names its class by module and name. When a class that is stored
in images moves, add ``(old module, name): (new module, name)`` here, so
images written before the move load the class instead of a ``Broken`` one.
The December 2026 re-layout (minds, night and the command line out of
``kernel/``) moved no persisted class: they all live in ``prototypes/``
(``UvmObject``, ``Slots``, ``Method``) and ``memory/`` (``Chunk``,
``Corpus``, ``Exchange``, the lexicon's splitter and stemmer), which stayed.
"""
import ZODB
from ZODB.broken import find_global

MOVED: dict = {}


def find_class(connection, modulename, globalname):
    """ZODB's class factory, with the rename map applied first."""
    modulename, globalname = MOVED.get((modulename, globalname), (modulename, globalname))
    return find_global(modulename, globalname)


class DB(ZODB.DB):
    """ZODB's DB with the rename map (every connection, the first one included)."""

    def classFactory(self, connection, modulename, globalname):
        return find_class(connection, modulename, globalname)
