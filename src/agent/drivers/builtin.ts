/**
 * The runtime drivers built into this agent, listed in one place; importing
 * this module registers them. `container` and `microvm` join this list when
 * their issues land.
 */
import './process-driver.js';

export const BUILTIN_DRIVERS = ['process'] as const;
