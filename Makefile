# Lambda packages for template.yaml (Metadata: BuildMethod: makefile).
#
# `sam build` runs `make build-<LogicalId>` with ARTIFACTS_DIR set to the resource's build folder.
# The same targets build by hand:  make build-DependenciesLayer ARTIFACTS_DIR=/tmp/layer
#
# Layout (docs/PACKAGING.md): the third-party packages go into ONE layer, DependenciesLayer, that
# both functions use, so the producer can import every module the consumer can (it must import the
# agent module to learn its stages). The functions themselves carry only the kit's code and yours
# (SOURCE_PACKAGES, ~1 MB), so a code change rebuilds and uploads little.
#
# Which packages the layer holds is chosen here. The default carries numpy and OpenCV for the
# vision dependencies, zipped (~100 MB, see VISION_ARCHIVE). For agents that use neither, build the
# lean set (~30 MB, faster cold starts):
#   LAYER_REQUIREMENTS=requirements/consumer.txt sam build
# Your agent's own third-party packages: a complete, pinned requirements file (pip runs with
# --no-deps), added to the list:  LAYER_REQUIREMENTS="requirements/vision.txt requirements/agent.txt"
# `scripts/package-size` reports the size of every variant.
#
# Wheels are fetched for the Lambda platform (CPython 3.12, x86_64, glibc 2.34 on Amazon Linux 2023)
# whatever the build machine is, so no container is needed and nothing is compiled.

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

PYTHON ?= $(if $(wildcard $(ROOT)/.venv/bin/python),$(ROOT)/.venv/bin/python,python3)
# One or more requirement files (space-separated, relative to the repository or absolute).
LAYER_REQUIREMENTS ?= requirements/vision.txt
# The per-function sets of earlier versions would now be ignored without a word: say so instead.
ifneq ($(CONSUMER_REQUIREMENTS)$(PRODUCER_REQUIREMENTS),)
$(error CONSUMER_REQUIREMENTS/PRODUCER_REQUIREMENTS are no longer used: both functions share one dependencies layer. Set LAYER_REQUIREMENTS instead, e.g. LAYER_REQUIREMENTS=requirements/consumer.txt (docs/PACKAGING.md))
endif
# Your top-level packages next to agents/ go here too, e.g. SOURCE_PACKAGES="agent_core handlers agents mylib".
SOURCE_PACKAGES ?= agent_core handlers agents
# Extra pip arguments, e.g. an offline wheelhouse: PIP_INSTALL_ARGS="--no-index --find-links DIR"
PIP_INSTALL_ARGS ?=
# 1: numpy and OpenCV ship as one deflate archive, _agentkit_vendor/vision.zip in the layer, that
# each function unpacks to /tmp once per execution environment (agent_core/vendored.py; ~195 MB
# of /tmp, one to two seconds of cold start): the layer drops from ~220 MB to ~100 MB. 0: they
# ship unpacked, with no unpacking step, still under Lambda's limit of 262 MB ("250 MB"). Sets
# without these distributions get no archive either way. Trade-offs: docs/PACKAGING.md.
VISION_ARCHIVE ?= 1
VISION_ARCHIVE_DISTS := numpy opencv-python-headless
# 1: strip symbols off the bundled shared libraries when a GNU strip is installed (Linux build
# hosts; ~7 MB). Libraries that would not load stripped are left as they are. 0: skip.
STRIP_LIBRARIES ?= 1

# manylinux2014 is what most wheels carry; numpy >= 2.3 only publishes manylinux_2_28 wheels, and
# the python3.12 runtime's glibc 2.34 runs everything up to manylinux_2_34.
LAMBDA_PLATFORMS := manylinux2014_x86_64 manylinux_2_28_x86_64 manylinux_2_34_x86_64
# --no-deps: the requirement sets are complete, generated from uv.lock (scripts/lock_requirements.py).
PIP_LAMBDA_ARGS := --disable-pip-version-check --no-input --upgrade --no-deps \
	$(addprefix --platform ,$(LAMBDA_PLATFORMS)) --only-binary=:all: --implementation cp \
	--python-version 3.12 --no-compile

define check_artifacts_dir
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run 'sam build', or 'make $@ ARTIFACTS_DIR=<empty folder>'" >&2; exit 2; }
endef

# The layer: Lambda puts <layer>/python on sys.path (as /opt/python).
LAYER_SITE = $(ARTIFACTS_DIR)/python

# The layer's python/ folder is emptied first, so that packages dropped from the requirement sets
# since the last build cannot linger in it.
define dependencies_layer
	$(check_artifacts_dir)
	@test -n "$(strip $(LAYER_REQUIREMENTS))" || { echo "LAYER_REQUIREMENTS is empty: name at least one requirements file" >&2; exit 2; }
	@$(foreach file,$(LAYER_REQUIREMENTS),test -f "$(call requirements_path,$(file))" || { echo "requirements file $(file) not found (looked for $(call requirements_path,$(file)))" >&2; exit 2; };)
	@case "$(VISION_ARCHIVE)$(STRIP_LIBRARIES)" in [01][01]) ;; *) echo "VISION_ARCHIVE and STRIP_LIBRARIES take 0 or 1" >&2; exit 2;; esac
	rm -rf "$(LAYER_SITE)"
	mkdir -p "$(LAYER_SITE)"
	"$(PYTHON)" -m pip install $(PIP_LAMBDA_ARGS) --target "$(LAYER_SITE)" $(PIP_INSTALL_ARGS) $(foreach file,$(LAYER_REQUIREMENTS),-r "$(call requirements_path,$(file))")
	$(call prune,$(LAYER_SITE))
	$(if $(filter 1,$(STRIP_LIBRARIES)),"$(PYTHON)" "$(ROOT)/scripts/lambda_package.py" strip "$(LAYER_SITE)")
	$(if $(filter 1,$(VISION_ARCHIVE)),"$(PYTHON)" "$(ROOT)/scripts/lambda_package.py" pack "$(LAYER_SITE)" $(addprefix --dist ,$(VISION_ARCHIVE_DISTS)))
endef

# The agentkit command line: run on a workstation, never by a handler (docs/ARCHITECTURE.md).
CLI_ONLY := agent_core/cli.py agent_core/commands

# A function: the kit's code and the agent; infra/, tests/ and the command line never ship.
define function_code
	$(check_artifacts_dir)
	mkdir -p "$(ARTIFACTS_DIR)"
	$(foreach pkg,$(SOURCE_PACKAGES),rm -rf "$(ARTIFACTS_DIR)/$(pkg)" && cp -R "$(ROOT)/$(pkg)" "$(ARTIFACTS_DIR)/$(pkg)" &&) true
	rm -rf $(foreach path,$(CLI_ONLY),"$(ARTIFACTS_DIR)/$(path)")
	$(call prune,$(ARTIFACTS_DIR))
endef

# $(call prune,<folder>): files Lambda never uses: bytecode caches (the code is compiled on first
# import anyway), type stubs, pip's console scripts, and numpy's own test suites (not imported by
# numpy itself).
define prune
	find "$(1)" -depth -type d -name __pycache__ -exec rm -rf {} +
	find "$(1)" -type f \( -name '*.pyc' -o -name '*.pyi' \) -delete
	rm -rf "$(1)/bin"
	if [ -d "$(1)/numpy" ]; then find "$(1)/numpy" -depth -type d -name tests -exec rm -rf {} +; fi
endef

requirements_path = $(if $(filter /%,$(1)),$(1),$(ROOT)/$(1))

.PHONY: build-DependenciesLayer build-ProducerFunction build-ConsumerFunction print-platforms

# For scripts/package_size.py, which fetches the same wheels: `make -s print-platforms`.
print-platforms:
	@echo $(LAMBDA_PLATFORMS)

build-DependenciesLayer:
	$(dependencies_layer)

build-ProducerFunction:
	$(function_code)

build-ConsumerFunction:
	$(function_code)
