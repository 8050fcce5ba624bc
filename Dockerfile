# The review app's film viewer (OpenSeadragon), as its package-lock.json pins it
FROM node:20-slim AS viewer
WORKDIR /viewer
COPY screening/web/viewer/package.json screening/web/viewer/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
# EXTRAS=gpu installs JAX with CUDA 12 for the GPU workers (docker-compose.gpu.yml).
ARG EXTRAS=""
RUN useradd --uid 10001 --user-group --home-dir /var/lib/screening --create-home screening
WORKDIR /app
COPY pyproject.toml README.md ./
COPY screening ./screening
COPY --from=viewer /viewer/node_modules ./screening/web/viewer/node_modules
COPY models ./models
RUN pip install --no-cache-dir -e ".${EXTRAS:+[$EXTRAS]}"
ENV SCREEN_MODELS_DIR=/app/models TF_CPP_MIN_LOG_LEVEL=2 SCREEN_DATA_DIR=/var/lib/screening
# `screen listen` (DICOM) and `screen serve` (the review app)
EXPOSE 11112 8000
USER screening
CMD ["screen", "--help"]
