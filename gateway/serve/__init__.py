"""`tollgate serve`: the process start-up (settings, the bundle check, file-descriptor limits,
the ledger owner process, granian's workers). The request path itself is gateway/server/."""
