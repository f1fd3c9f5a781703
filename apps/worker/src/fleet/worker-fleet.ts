import { spawn, type ChildProcess } from 'node:child_process';
import { Logger } from '@nestjs/common';
import { fleetAssignments, workerEnvironment, type FleetConfig, type WorkerAssignment } from '../config/fleet-config';
import { CONFIG_ERROR_EXIT } from '../config/worker-config';
import { type HostDevices, pinnedWorkerCommand, readHostDevices } from './device-pinning';

interface Member {
  assignment: WorkerAssignment;
  child?: ChildProcess;
  startedAt: number;
  crashesInARow: number;
  restartTimer?: NodeJS.Timeout;
  /** It exited refusing its configuration: left down. */
  refused?: boolean;
}

/**
 * One worker process per (device, ordinal): each pinned to its device, restarted with a growing delay when it dies
 * unexpectedly, stopped with SIGTERM (it drains its in-flight prompts) when the fleet stops.
 */
export class WorkerFleet {
  private readonly logger = new Logger('WorkerFleet');
  private readonly members: Member[];
  private stopping = false;
  private readonly exited = new Map<string, Promise<void>>();
  private readonly host: HostDevices;

  /** `onAllRefused`: every worker refused its configuration, so nothing is left to supervise. */
  constructor(
    private readonly config: FleetConfig,
    private readonly workerEntry: string,
    private readonly onAllRefused: () => void = () => undefined,
  ) {
    this.members = fleetAssignments(config).map((assignment) => ({ assignment, startedAt: 0, crashesInARow: 0 }));
    this.host = readHostDevices();
    // Fail at start, not at each restart, when a device cannot be pinned.
    for (const { assignment } of this.members) pinnedWorkerCommand(config.executionProvider, assignment.device, process.execPath, workerEntry, this.host);
  }

  start(): void {
    for (const member of this.members) this.launch(member);
  }

  /** Forwards the signal to every worker and resolves when all have exited. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopping = true;
    for (const member of this.members) {
      clearTimeout(member.restartTimer);
      member.child?.kill(signal);
    }
    await Promise.all(this.exited.values());
  }

  private launch(member: Member): void {
    const { workerId, device } = member.assignment;
    const launch = pinnedWorkerCommand(this.config.executionProvider, device, process.execPath, this.workerEntry, this.host);
    const child = spawn(launch.command, launch.args, {
      env: workerEnvironment(this.config, member.assignment),
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    member.child = child;
    member.startedAt = Date.now();
    this.logger.log(`started ${workerId} (pid ${child.pid}) on ${this.config.executionProvider}:${device}`);
    this.exited.set(workerId, new Promise<void>((resolve) => child.once('exit', (code, signal) => {
      member.child = undefined;
      this.onExit(member, code, signal);
      resolve();
    })));
  }

  private onExit(member: Member, code: number | null, signal: NodeJS.Signals | null): void {
    const { workerId } = member.assignment;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (this.stopping) {
      this.logger.log(`${workerId} stopped (${how})`);
      return;
    }
    if (code === CONFIG_ERROR_EXIT) {
      this.logger.error(`${workerId} refused its configuration (${how}); not restarting it`);
      member.refused = true;
      if (this.members.every((other) => other.refused)) this.onAllRefused();
      return;
    }
    const ranHealthy = Date.now() - member.startedAt >= this.config.healthyAfterMs;
    member.crashesInARow = ranHealthy ? 1 : member.crashesInARow + 1;
    const delay = Math.min(this.config.restartBaseMs * 2 ** (member.crashesInARow - 1), this.config.restartMaxMs);
    this.logger.warn(`${workerId} died unexpectedly (${how}); restarting in ${delay} ms`);
    member.restartTimer = setTimeout(() => {
      if (!this.stopping) this.launch(member);
    }, delay);
  }

  /** Pids of the running workers (for tests and status output). */
  pids(): number[] {
    return this.members.flatMap((member) => (member.child?.pid ? [member.child.pid] : []));
  }
}
