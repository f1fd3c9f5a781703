# One image for the api and the workers: `node dist/apps/api/src/main.js` or `node bin/falconq.js worker ...`.
# CPU and WebGPU execution providers work with the stock onnxruntime-node package. For the CUDA provider, build with
# --build-arg ORT_CUDA=1 on a host that can reach onnxruntime's CUDA feed (CUDA 12 + cuDNN 9 in the runtime image);
# see docs/deploy.md.
FROM node:20-slim AS build
WORKDIR /app
ARG ORT_CUDA=0
COPY package.json package-lock.json ./
RUN if [ "$ORT_CUDA" = "1" ]; then npm ci --no-audit --no-fund; \
    else ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund; fi
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY apps apps
COPY libs libs
COPY bin bin
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

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
CMD ["node", "dist/apps/api/src/main.js"]
