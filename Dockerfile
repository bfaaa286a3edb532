# One image for every part: `wes serve`, `wes worker`, `wes projections run`, `wes services`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 WES_LOG_JSON=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY application application
COPY projections projections
COPY api api
COPY cli cli
COPY simulator simulator
COPY bench bench
COPY bootstrap bootstrap
RUN pip install . && useradd --create-home wes
USER wes
EXPOSE 8000
CMD ["wes", "serve", "--host", "0.0.0.0"]
