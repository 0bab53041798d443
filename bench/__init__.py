"""nnpm's benchmarks: every figure measured side by side with its peer, in one run.

``python -m bench`` (what ``make bench`` runs) measures everything on 127.0.0.1, prints
one table (figure | nnpm | peer | ratio | target | ok?) and writes ``bench/results.json``.
``python -m bench --only install startup`` runs some groups; ``--runs N`` sets how many
timed runs each median takes (after one warm-up run). docs/bench.md says how each figure
is measured.

Modules, one per figure group:
  common     temp folders, subprocess timing, a real registry server, the result rows
  world      the shared set-up: example packages built, a registry with them published
  install    cold install (vs curl + sha256sum, vs pip of a wheel), warm install
  startup    `nnpm --help` (vs `python -c pass`), nnpm.load + first run (vs onnxruntime)
  pipeline   imagenet-classifier fused vs its steps as separate sessions
  registry   packument requests/s (vs /api/v1/health), peak RSS while receiving 1 GiB
  resolver   resolving a synthetic 1,000-package graph from cached packuments
  loadgen    the HTTP load generator the registry group runs in separate processes

Nothing here asserts: a missed target is a row marked "no", and the run still succeeds.
"""
