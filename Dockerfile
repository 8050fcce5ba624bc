FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY screening ./screening
COPY models ./models
RUN pip install --no-cache-dir -e .
ENV SCREEN_MODELS_DIR=/app/models TF_CPP_MIN_LOG_LEVEL=2
CMD ["screen", "--help"]
