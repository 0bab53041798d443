"""nnpm's benchmarks: every figure measured side by side with its peer, in one run.

``python -m bench`` (what ``make bench`` runs) measures everything on 127.0.0.1, prints
one table (figure | nnpm | peer | ratio | target | ok?) and appends the run to
``bench/results.json``. ``python -m bench --only install startup`` runs some groups;
``--runs N`` sets how many timed runs each median takes (after one warm-up run);
``--quick`` is a short run.

Modules, one per figure group (docs/bench.md explains every row):
  common       temp folders, subprocess timing, peak and sampled RSS, a real registry server, the result rows
  world        the shared set-up: example packages built, a registry with them published
  install      cold install (vs curl + sha256sum, pip and uv of a wheel), warm install (vs uv)
  curlpeer     curl + sha256sum of the blobs an install fetches: the physical-limit peer
  uvpeer       uv as a peer: `uv pip install` of a wheel from a local index, cold and warm
  wheels       wheels written with zipfile, for the pip and uv peers
  startup      `nnpm --help` (vs `python -c pass`), nnpm.load + first run (vs onnxruntime)
  pipeline     imagenet-classifier fused vs its steps as separate sessions
  registry     packument requests/s (vs /api/v1/health), peak RSS while receiving 1 GiB
  resolver     resolving a synthetic 1,000-package graph from cached packuments
  publish      publish of a 1 MB model vs `nnpm pack` of it
  variants     the speed-up of `--prefer speed` here vs the registry's recorded one
  projects     `nnpm sync` of a project vs `uv sync`
  finetune     bytes and time of a fine-tuned version vs a whole-file re-upload
  oci          install from docker-registry vs `oras pull`
  trust        signed index and signed packages vs the same without
  sizes        cold install at 47 MB / 500 MB / 2.5 GB (bigmodel: the generated models), load, client RSS
  concurrency  100 concurrent installs vs nginx (nginx: the peer), RSS meanwhile, /health under 80 publishes
  loadgen      the HTTP load generator (requests/s, latencies); installload, publishload: the others

Nothing here asserts: a missed target is a row marked "no", and the run still succeeds.
"""
