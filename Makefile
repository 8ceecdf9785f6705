# Lambda packages for template.yaml (Metadata: BuildMethod: makefile).
#
# `sam build` runs `make build-<LogicalId>` with ARTIFACTS_DIR set to the function's build folder.
# The same targets build by hand:  make build-ConsumerFunction ARTIFACTS_DIR=/tmp/consumer
#
# Which packages the consumer ships is chosen here. The default carries numpy and OpenCV for the
# vision dependencies, zipped (~100 MB, see VISION_ARCHIVE). For agents that use neither, build the
# lean set (~30 MB, faster cold starts):
#   CONSUMER_REQUIREMENTS=requirements/consumer.txt sam build
# or change the default below. `scripts/package-size` reports the size of every variant.
#
# Wheels are fetched for the Lambda platform (CPython 3.12, x86_64, glibc 2.34 on Amazon Linux 2023)
# whatever the build machine is, so no container is needed and nothing is compiled.

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

PYTHON ?= $(if $(wildcard $(ROOT)/.venv/bin/python),$(ROOT)/.venv/bin/python,python3)
PRODUCER_REQUIREMENTS ?= requirements/producer.txt
CONSUMER_REQUIREMENTS ?= requirements/vision.txt
# Extra pip arguments, e.g. an offline wheelhouse: PIP_INSTALL_ARGS="--no-index --find-links DIR"
PIP_INSTALL_ARGS ?=
# 1: numpy and OpenCV ship as one deflate archive, _agentkit_vendor/vision.zip, that the consumer
# unpacks to /tmp once per execution environment (agent_core/vendored.py; ~195 MB of /tmp, about a
# second of cold start): the package drops from ~225 MB to ~100 MB. 0: they ship unpacked, with no
# unpacking step, still under Lambda's limit of 262 MB ("250 MB"). Packages without these
# distributions get no archive either way. Trade-offs: docs/PACKAGING.md.
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

# The code the handlers import; infra/ and tests/ never ship.
SOURCE_PACKAGES := agent_core handlers agents

# $(call lambda_package,<requirements file>)
define lambda_package
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run 'sam build', or 'make $@ ARTIFACTS_DIR=<empty folder>'" >&2; exit 2; }
	@test -f "$(call requirements_path,$(1))" || { echo "requirements file $(1) not found (looked for $(call requirements_path,$(1)))" >&2; exit 2; }
	@case "$(VISION_ARCHIVE)$(STRIP_LIBRARIES)" in [01][01]) ;; *) echo "VISION_ARCHIVE and STRIP_LIBRARIES take 0 or 1" >&2; exit 2;; esac
	mkdir -p "$(ARTIFACTS_DIR)"
	rm -rf "$(ARTIFACTS_DIR)/_agentkit_vendor"
	"$(PYTHON)" -m pip install $(PIP_LAMBDA_ARGS) --target "$(ARTIFACTS_DIR)" $(PIP_INSTALL_ARGS) -r "$(call requirements_path,$(1))"
	$(foreach pkg,$(SOURCE_PACKAGES),rm -rf "$(ARTIFACTS_DIR)/$(pkg)" && cp -R "$(ROOT)/$(pkg)" "$(ARTIFACTS_DIR)/$(pkg)" &&) true
	$(prune)
	$(if $(filter 1,$(STRIP_LIBRARIES)),"$(PYTHON)" "$(ROOT)/scripts/lambda_package.py" strip "$(ARTIFACTS_DIR)")
	$(if $(filter 1,$(VISION_ARCHIVE)),"$(PYTHON)" "$(ROOT)/scripts/lambda_package.py" pack "$(ARTIFACTS_DIR)" $(addprefix --dist ,$(VISION_ARCHIVE_DISTS)))
endef

# Files Lambda never uses: bytecode caches (the code is compiled on first import anyway), type
# stubs, pip's console scripts, and numpy's own test suites (not imported by numpy itself).
define prune
	find "$(ARTIFACTS_DIR)" -depth -type d -name __pycache__ -exec rm -rf {} +
	find "$(ARTIFACTS_DIR)" -type f \( -name '*.pyc' -o -name '*.pyi' \) -delete
	rm -rf "$(ARTIFACTS_DIR)/bin"
	if [ -d "$(ARTIFACTS_DIR)/numpy" ]; then find "$(ARTIFACTS_DIR)/numpy" -depth -type d -name tests -exec rm -rf {} +; fi
endef

requirements_path = $(if $(filter /%,$(1)),$(1),$(ROOT)/$(1))

.PHONY: build-ProducerFunction build-ConsumerFunction

build-ProducerFunction:
	$(call lambda_package,$(PRODUCER_REQUIREMENTS))

build-ConsumerFunction:
	$(call lambda_package,$(CONSUMER_REQUIREMENTS))
