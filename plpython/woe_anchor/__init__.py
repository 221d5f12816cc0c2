"""woe_anchor's in-database Python package (inlined into the extension by `make`).

Modules are pure (numpy in, numpy out) except ``source`` and ``fit``, which
receive ``plpy`` as an argument; pytest imports them all without a database.
"""
