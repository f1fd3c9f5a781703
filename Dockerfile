# One image for the api and the workers: the api by default (CMD below) or `node bin/falconq.js worker ...`.
# CPU and WebGPU execution providers work with the stock onnxruntime-node package. CUDA workers: the `cuda` target
# (docker build --target cuda), on NVIDIA's CUDA 13 runtime image, with the CUDA 13 provider installed by
# `falconq setup cuda` (from npm, sha256-checked). For a CUDA 12 host instead, build the default target with
# --build-arg ORT_CUDA=1 where onnxruntime's feed is reachable (onnxruntime-node's installer; CUDA 12 + cuDNN 9).
# See docs/deploy.md.
FROM node:20-slim AS build
WORKDIR /app
ARG ORT_CUDA=0
COPY package.json package-lock.json ./
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund && \
    if [ "$ORT_CUDA" = "1" ]; then (cd node_modules/onnxruntime-node && node script/install --onnxruntime-node-install=cuda12); fi
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY apps apps
COPY libs libs
COPY bin bin
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM build AS build-cuda
RUN node bin/falconq.js setup cuda --cuda 13 --install-only

FROM node:20-slim
# libvulkan1 lets the WebGPU provider (Dawn over Vulkan) reach the NVIDIA driver that the NVIDIA container runtime
# mounts into the container.
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/bin bin
USER node
EXPOSE 3000
# The api with a small V8 young generation, as scripts/api-command.js starts it (docs/deploy.md, "The api's memory").
CMD ["node", "--max-semi-space-size=2", "dist/apps/api/src/main.js"]

# CUDA workers (FALCONQ_EP=cuda): the CUDA 13 runtime libraries come with the image, libcuda.so.1 with the NVIDIA
# container runtime at start.
FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04 AS cuda
COPY --from=node:20-slim /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build-cuda /app/package.json ./
COPY --from=build-cuda /app/node_modules node_modules
COPY --from=build-cuda /app/dist dist
COPY --from=build-cuda /app/bin bin
USER ubuntu
CMD ["node", "bin/falconq.js", "worker"]
