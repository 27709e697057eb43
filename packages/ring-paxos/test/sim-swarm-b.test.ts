import { swarmPart } from './sim-swarm.js';

swarmPart(1);
