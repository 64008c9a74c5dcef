# The two set-up commands from the README, and helpers. Each installs what it needs.
.PHONY: demo test bench localaws fmt

demo:  ## Run the main job on the local stand-in
	@bash scripts/demo.sh $(ARGS)

test:  ## Everything CI runs: fmt, clippy, tests, linters
	@bash scripts/test.sh

localaws: ## The local AWS stand-in in the foreground (PORT=4566)
	@bash scripts/localaws.sh

bench: ## Benchmarks; results land in bench/results/
	@bash bench/service.sh
	@bash bench/localaws.sh
	@bash bench/promotion.sh
	@bash bench/rollout.sh
	@bash bench/analysis.sh

fmt:
	@cargo fmt --all
