# geoclim forecast service: `geoclim serve` (FastAPI + uvicorn) over exported .onnx models.
#
# The serving path imports numpy, pandas, xarray, onnxruntime and the web stack only, never
# torch, Lightning or Hydra, so the image installs the geoclim wheel without its training
# dependencies (--no-deps) plus deploy/requirements-serve.txt. docs/deploy.md has the
# contents, the size estimate and the way to Kubernetes.
#
#   docker build -t geoclim-serve:0.1.0 .
#   docker run -p 8000:8000 -v $PWD/export:/models:ro -v $PWD/secrets:/secrets:ro \
#       geoclim-serve:0.1.0 /models/model.onnx --keys /secrets/keys.json
#   # a registry:  -v $PWD/registry:/models:ro ... geoclim-serve:0.1.0 no2_lstm \
#   #                  --registry /models --keys /secrets/keys.json
#   # keys: geoclim serve keygen <id> --keys secrets/keys.json   (prints the key once)
#   # every option is also GEOCLIM_SERVE_<OPTION> in the environment (docker run -e ...)

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY geoclim ./geoclim
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GEOCLIM_SERVE_HOST=0.0.0.0 \
    GEOCLIM_SERVE_PORT=8000
COPY deploy/requirements-serve.txt /tmp/requirements-serve.txt
RUN pip install --no-cache-dir -r /tmp/requirements-serve.txt && rm /tmp/requirements-serve.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/geoclim-*.whl && rm -rf /wheels \
    && python -c "import sys, geoclim.serving.app, geoclim.serving.server, geoclim.cli.serve; \
assert 'torch' not in sys.modules"
RUN useradd --create-home --uid 10001 --user-group geoclim
USER 10001
WORKDIR /home/geoclim
EXPOSE 8000
# The server drains on SIGTERM (readiness 503, then in-flight requests finish).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ['GEOCLIM_SERVE_PORT'], timeout=2)"]
ENTRYPOINT ["geoclim", "serve"]
CMD ["/models/model.onnx", "--keys", "/secrets/keys.json"]
