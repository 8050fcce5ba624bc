FROM python:3.11-slim
# EXTRAS=gpu installs JAX with CUDA 12 for the GPU workers (docker-compose.gpu.yml).
ARG EXTRAS=""
RUN useradd --uid 10001 --user-group --home-dir /var/lib/screening --create-home screening
WORKDIR /app
COPY pyproject.toml README.md ./
COPY screening ./screening
COPY models ./models
RUN pip install --no-cache-dir -e ".${EXTRAS:+[$EXTRAS]}"
ENV SCREEN_MODELS_DIR=/app/models TF_CPP_MIN_LOG_LEVEL=2 SCREEN_DATA_DIR=/var/lib/screening
# `screen listen` (DICOM) and `screen serve` (the review app)
EXPOSE 11112 8000
USER screening
CMD ["screen", "--help"]
