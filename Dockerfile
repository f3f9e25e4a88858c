# One image holds every stage: `docker run leverplus:<version> <stage> ...` is what every Argo pod runs.
FROM python:3.11-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="leverplus" \
      org.opencontainers.image.description="Lever-Plus: balanced RL data, ICD-selector training and VQAv2 evaluation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/leverplus/.cache/huggingface

RUN useradd --create-home --uid 10001 leverplus
WORKDIR /opt/leverplus

# Dependency layers: rebuilt only when pyproject.toml changes, not on every source edit.
# PyPI's torch wheel for linux/x86_64 is the CUDA build.
RUN pip install torch==2.14.1 torchvision==0.29.1
# README.md is a placeholder here so that a README edit does not invalidate this layer.
COPY pyproject.toml ./
RUN touch README.md
RUN mkdir leverplus && touch leverplus/__init__.py && pip install . && pip uninstall -y leverplus && rm -rf leverplus

COPY README.md ./
COPY leverplus ./leverplus
RUN pip install --no-deps . && leverplus --help > /dev/null

USER 10001
ENTRYPOINT ["leverplus"]
CMD ["--help"]
