/** What `falconq setup cuda` reads from the environment: where the dynamic loader also looks for libraries. */
export interface CudaHostConfig {
  ldLibraryPath?: string;
}

export function readCudaHostConfig(env: NodeJS.ProcessEnv = process.env): CudaHostConfig {
  return { ldLibraryPath: env.LD_LIBRARY_PATH };
}
