# ccweb, the service, as one image.
#
#   docker build -t ccweb .
#   docker run --rm -p 8080:8080 -v "$PWD/config:/etc/ccweb:ro" ccweb     # config/policy.yaml
#
# The policy is mounted at /etc/ccweb/policy.yaml (CCWEB_CONFIG); the image holds no configuration. Mount
# the directory rather than the file, so that an edit replacing the file reaches the container.
# The service's AWS identity comes from the standard credential chain (IRSA on EKS, or AWS_* variables).
# The helper, as the one file GET /helper/ccweb-helper serves, is at /opt/ccweb/ccweb-helper:
#   docker cp "$(docker create ccweb)":/opt/ccweb/ccweb-helper .
#
# Supply chain: both stages start from the same base image, pinned by the digest of its multi-platform index
# (amd64 and arm64), so a moved tag changes nothing here. To take a newer base image (Debian and Python security
# fixes), read the tag's current index digest and replace it on both FROM lines, then rebuild and test:
#   docker buildx imagetools inspect python:3.11-slim-bookworm        # "Digest:" at the top
# The Python packages come from requirements.lock, every version pinned with its SHA-256 (pip --require-hashes
# refuses anything else, wheels only); ./scripts/lock regenerates it. ccweb and its helper are then built from this
# context without a package index (--no-index) and without fetching anything else (--no-deps).

# -- build: the locked dependencies, then ccweb itself, into a virtual environment -----------------------
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# The service's dependencies and the build backend, exactly as locked (a layer of its own: kept while only
# ccweb's code changes). pip refuses a requirement without a hash, a file whose hash differs, and any dependency
# the lock does not name.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock

COPY pyproject.toml setup.py README.md ./
COPY service/ccweb/ service/ccweb/
COPY helper/pyproject.toml helper/
COPY helper/ccweb_helper/ helper/ccweb_helper/

# ccweb (the service) and its helper's own distribution from ./helper, built with the locked setuptools, nothing
# fetched; pip check: every requirement of both is met by what the lock installed. Then the helper zipapp written
# from the installed package: the same bytes the service serves at /helper/ccweb-helper. Its SHA-256 is printed in
# the build log, the value GET /helper/ccweb-helper.sha256 answers: pin it where CI jobs and laptops download the
# helper (docs/ci.md, docs/rollout.md).
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index . ./helper \
 && /opt/venv/bin/pip check \
 && mkdir /opt/ccweb \
 && /opt/venv/bin/python -c "from ccweb.helper_dist import write_zipapp; print(write_zipapp('/opt/ccweb/ccweb-helper'))"

# -- runtime: the virtual environment and the helper, nothing else from the build ----------------------
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

LABEL org.opencontainers.image.title="ccweb" \
      org.opencontainers.image.description="Single sign-on git access to AWS CodeCommit: OIDC token in, scoped CodeCommit credential out." \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 ccweb \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ccweb

# Owned by root, so the service cannot change its own code or the helper it hands out.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/ccweb /opt/ccweb

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CCWEB_CONFIG=/etc/ccweb/policy.yaml

# Mount the policy here, read-only: a Kubernetes ConfigMap, or -v "$PWD/config:/etc/ccweb:ro".
VOLUME ["/etc/ccweb"]

USER 10001:10001
EXPOSE 8080

# Liveness with the standard library (slim images have no curl); never through a proxy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["ccweb"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
