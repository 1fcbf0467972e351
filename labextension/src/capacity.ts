// What the scale dialog says about a memory request next to the cluster's size: nothing when a
// worker already has that much; that nbflow will start a worker of that size when the cluster
// can grow to it (nbflow/scaling, the cluster reply's `scaling`); otherwise that no worker could
// run the step. A pure function of the cluster reply, so jest can check every case.

import { formatBytes } from './format';
import { ClusterJSON } from './model';

export interface CapacityNote {
  /** 'info': it will work (a worker gets started); 'warning': it cannot run as asked. */
  level: 'info' | 'warning';
  text: string;
}

/** The note for asking `asked` bytes of memory on `cluster`, or null when nothing needs saying. */
export function capacityNote(
  cluster: ClusterJSON | null | undefined,
  asked: number | null
): CapacityNote | null {
  const largest = cluster?.largest_worker;
  if (
    !largest ||
    asked === null ||
    largest.memory <= 0 ||
    asked <= largest.memory
  ) {
    return null;
  }
  const have = `More than the largest worker has (${formatBytes(largest.memory)})`;
  const scaling = cluster?.scaling;
  if (!scaling) {
    return {
      level: 'warning',
      text: `${have}: no worker could run this step.`
    };
  }
  const most = scaling.limits?.memory;
  if (most !== undefined && most !== null && asked > most) {
    return {
      level: 'warning',
      text:
        `${have}, and more than the ${scaling.manager} can start (${formatBytes(most)}): ` +
        'no worker could run this step. Run it on a bigger cluster.'
    };
  }
  return {
    level: 'info',
    text:
      `${have}: nbflow will ask the ${scaling.manager} for a worker of this size, ` +
      'and retire it when idle.'
  };
}
