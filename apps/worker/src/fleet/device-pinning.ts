import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

// Pinning a worker process to one GPU.
//
// cuda: CUDA_VISIBLE_DEVICES (set in workerEnvironment).
// webgpu: onnxruntime-node 1.30 has no adapter choice (its `deviceId` only keys a shared context) and NVIDIA's
// Vulkan driver ignores CUDA_VISIBLE_DEVICES; measured on an H100 x2 box, every process landed on GPU 0 either way.
// What works: start the worker in a private mount namespace where the other GPUs' device nodes (/dev/nvidiaN) are
// bind-mounted over by /dev/null, so the driver only finds the assigned one (measured: the process ran on GPU 1).
// In containers, give each container its GPU instead (docker compose `device_ids`); then there is nothing to hide.

export interface LaunchCommand {
  command: string;
  args: string[];
}

export interface HostDevices {
  /** Indices N of the /dev/nvidiaN nodes present. */
  nvidiaDevices: number[];
  /** `unshare` (util-linux) can be run. */
  hasUnshare: boolean;
  isRoot: boolean;
}

export function readHostDevices(): HostDevices {
  let nvidiaDevices: number[] = [];
  try {
    nvidiaDevices = readdirSync('/dev')
      .map((name) => /^nvidia(\d+)$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => Number(match[1]))
      .sort((a, b) => a - b);
  } catch {
    // no /dev (not Linux): nothing to hide
  }
  const hasUnshare = spawnSync('unshare', ['--version'], { stdio: 'ignore' }).status === 0;
  return { nvidiaDevices, hasUnshare, isRoot: process.getuid?.() === 0 };
}

/**
 * The command that starts one worker on `device`: plain `node <entry>`, or for webgpu on a host with several NVIDIA
 * GPUs, the same wrapped in `unshare --mount` hiding the other GPUs. Throws when pinning is needed but impossible.
 */
export function pinnedWorkerCommand(executionProvider: string, device: number, nodePath: string, entry: string, host: HostDevices): LaunchCommand {
  const plain = { command: nodePath, args: [entry] };
  if (executionProvider !== 'webgpu' || host.nvidiaDevices.length < 2) return plain;
  if (!host.nvidiaDevices.includes(device)) {
    throw new Error(`GPU ${device} does not exist here (found /dev/nvidia${host.nvidiaDevices.join(', /dev/nvidia')})`);
  }
  if (!host.hasUnshare) {
    throw new Error('webgpu workers on a multi-GPU host are pinned with `unshare` (util-linux), which is not installed');
  }
  const hide = host.nvidiaDevices.filter((other) => other !== device).map((other) => `mount --bind /dev/null /dev/nvidia${other}`);
  const script = `${hide.join(' && ')} && exec "$0" "$@"`;
  // Without root, a user namespace (--map-root-user) allows the bind mounts; the device nodes stay world-readable.
  const namespaceFlags = host.isRoot ? ['--mount'] : ['--mount', '--map-root-user'];
  return { command: 'unshare', args: [...namespaceFlags, 'sh', '-c', script, nodePath, entry] };
}
