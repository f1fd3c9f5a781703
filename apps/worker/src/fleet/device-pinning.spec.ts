import { execFileSync } from 'node:child_process';
import { pinnedWorkerCommand, readHostDevices } from './device-pinning';

const twoGpus = { nvidiaDevices: [0, 1], hasUnshare: true, isRoot: true };

describe('pinnedWorkerCommand', () => {
  it('starts cpu and cuda workers plainly (cuda is pinned by CUDA_VISIBLE_DEVICES)', () => {
    expect(pinnedWorkerCommand('cuda', 1, '/node', 'main.js', twoGpus)).toEqual({ command: '/node', args: ['main.js'] });
    expect(pinnedWorkerCommand('cpu', 0, '/node', 'main.js', twoGpus)).toEqual({ command: '/node', args: ['main.js'] });
  });

  it('starts a webgpu worker plainly when there is only one GPU', () => {
    expect(pinnedWorkerCommand('webgpu', 0, '/node', 'main.js', { ...twoGpus, nvidiaDevices: [0] })).toEqual({ command: '/node', args: ['main.js'] });
  });

  it('hides every other GPU from a webgpu worker in a private mount namespace', () => {
    const launch = pinnedWorkerCommand('webgpu', 1, '/node', 'main.js', { ...twoGpus, nvidiaDevices: [0, 1, 2] });
    expect(launch.command).toBe('unshare');
    expect(launch.args.slice(0, 3)).toEqual(['--mount', 'sh', '-c']);
    expect(launch.args[3]).toBe('mount --bind /dev/null /dev/nvidia0 && mount --bind /dev/null /dev/nvidia2 && exec "$0" "$@"');
    expect(launch.args.slice(4)).toEqual(['/node', 'main.js']);
  });

  it('uses a user namespace when not root', () => {
    const launch = pinnedWorkerCommand('webgpu', 0, '/node', 'main.js', { ...twoGpus, isRoot: false });
    expect(launch.args.slice(0, 2)).toEqual(['--mount', '--map-root-user']);
  });

  it('refuses a GPU that does not exist, and a host without unshare', () => {
    expect(() => pinnedWorkerCommand('webgpu', 5, '/node', 'main.js', twoGpus)).toThrow('GPU 5 does not exist here (found /dev/nvidia0, /dev/nvidia1)');
    expect(() => pinnedWorkerCommand('webgpu', 1, '/node', 'main.js', { ...twoGpus, hasUnshare: false })).toThrow('util-linux');
  });

  it('the wrapper script passes the worker its arguments untouched', () => {
    // Same shape as the real wrapper, without the mounts (which need a namespace): sh -c '<script>' node entry.
    const launch = pinnedWorkerCommand('webgpu', 0, process.execPath, '-e', twoGpus);
    const script = launch.args[3].replace(/^.* && exec/, 'exec');
    const out = execFileSync('sh', ['-c', script, process.execPath, '-e', 'console.log(process.argv.length)'], { encoding: 'utf8' });
    expect(out.trim()).toBe('1');
  });

  it('reads this host without failing', () => {
    const host = readHostDevices();
    expect(Array.isArray(host.nvidiaDevices)).toBe(true);
  });
});
