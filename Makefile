# virtsnap: `make demo` runs the main job, `make test` the test suite, `make bench` the benchmarks (each writes
# bench/results/<name>.json; report.py turns them into bench/results/report.md and latency.png).
# Each target sets up what it needs first (Debian packages when missing, the .venv): the demo only QEMU,
# qemu-img and the tiny guest's parts; the tests also libvirt 9.0 (the oracle), Go and govmomi (vcsim), MkDocs.

.PHONY: setup demo test docs man bench lint clean

setup:
	@scripts/setup.sh test

demo:
	@scripts/setup.sh demo
	.venv/bin/python demo/demo.py

test: setup
	.venv/bin/python -m pytest -n 2 --dist loadscope --durations=25 tests

docs: setup
	.venv/bin/python scripts/gen_reference.py
	.venv/bin/mkdocs build --strict

man: setup
	.venv/bin/python scripts/gen_reference.py

bench:
	@scripts/setup.sh bench
	.venv/bin/python bench/bench_test_driver.py
	.venv/bin/python bench/bench_qemu.py
	.venv/bin/python bench/bench_esx.py
	.venv/bin/python bench/bench_external.py
	.venv/bin/python bench/bench_live_pause.py
	.venv/bin/python bench/bench_scale.py
	.venv/bin/python bench/bench_web.py
	.venv/bin/python bench/bench_remote.py
	.venv/bin/python bench/bench_ansible.py
	.venv/bin/python bench/report.py

lint: setup
	.venv/bin/ruff check src
	.venv/bin/mypy

clean:
	rm -rf .venv build site dist src/*.egg-info
