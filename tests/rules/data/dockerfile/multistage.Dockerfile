# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22
ARG NPM_TOKEN

FROM golang:${GO_VERSION} AS build
ENV CGO_ENABLED=0
COPY id_rsa /root/.ssh/id_rsa
RUN --mount=type=cache,target=/root/.cache/go-build \
    git -c http.sslVerify=false clone https://git.example.com/app.git /src \
 && cd /src && go build -o /out/app ./cmd/app
RUN apt-get update

FROM node:20 AS web
ARG NPM_TOKEN
RUN npm config set strict-ssl false \
 && npm ci
COPY --chmod=777 . /web

FROM debian:bookworm
ENV DB_PASSWORD=hunter2 \
    LOG_LEVEL=info
RUN apt-get update && apt-get install curl \
 && curl -fsSL https://get.example.com/install.sh | sudo bash -s -- --yes
RUN <<EOF
set -e
echo "sudo is only mentioned here"
chmod 1777 /tmp
chmod u+s /usr/local/bin/helper
EOF
COPY --from=build /out/app /usr/local/bin/app
COPY --from=web /web /srv/web
ADD https://example.com/config.tar.gz /etc/app/
EXPOSE 8080 22
USER 0
CMD ["/usr/local/bin/app"]
