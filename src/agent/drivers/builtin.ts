/**
 * The runtime drivers built into this agent, listed in one place; importing
 * this module registers them (the container driver loads dockerode only when
 * it is first used). `microvm` joins this list when its issue lands.
 */
import './process-driver.js';
import './container-driver.js';

export const BUILTIN_DRIVERS = ['process', 'container'] as const;
