# The two set-up commands from the README, and helpers. Each installs what it needs.
.PHONY: demo test bench fmt

demo:  ## Run the main job on the local stand-in
	@bash scripts/demo.sh

test:  ## Everything CI runs: fmt, clippy, tests, linters
	@bash scripts/test.sh

bench: ## Benchmarks; results land in bench/results/
	@bash bench/service.sh

fmt:
	@cargo fmt --all
