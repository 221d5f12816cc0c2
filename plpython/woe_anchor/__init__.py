"""woe_anchor's in-database Python package (inlined into the extension by `make`).

The fit, in the order it runs (``fit._fit_source``): check the parameters and
the source, read the rows through a reader, learn the thresholds, fold, fit
the WOE, score and persist.

    catalog    table names, windows and defaults shared by modules and SQL
    errors     refusals with a SQLSTATE and a hint (never a traceback)
    bands      band schemas as data; schema 1 (docs/contract.md 5)
    schemas    loading and checking a stored band schema
    sqlgen     band schemas compiled to SQL expressions
    source     the source relation: columns, types, shards
    packs      bands packed into integer combinations
    passes     the fit's set-based statements (statistics, sums, rows, scores, quality)
    rowset     the per-row read decoded and aggregated in numpy, chunk by chunk
    spill      a fit's chunks of rows kept on disk past its memory bound
    heap       the backend's freed C heap kept for reuse while a fit runs
    sharded    the fan-out over shards (dblink) and its reader
    readers    the reader interface: LocalRows (rowset) and ShardedRows (sharded)
    woe        WOE of every fit from per-fold sums (docs/contract.md 4, 6, 7)
    quality    AUC, log loss, score bins (exact, from runs read a block at a time), band report
    policy     the activation policy's rules: checks, retention, the verdict on stored figures
    persist    writing a model: the definer entry point's side and the caller's staging
    gate       the activation gate: the policy an activating fit must pass
    fit        ml.fit_woe_anchor
    legacy     importing the Python trainer's tables
    inference  scoring with a frozen mapping; training features; stored scores
    monitor    drift of the live population from what a model learned (PSI)
    views      the live views, per-row scoring functions and source views

Functions that run SQL take ``plpy`` as an argument; everything else is plain
numpy, and pytest imports every module without a database.
"""
