// capacityNote: what the scale dialog says about a memory request, for each kind of cluster.

import { capacityNote } from '../capacity';
import { ClusterJSON } from '../model';

const GiB = 2 ** 30;

function cluster(scaling: ClusterJSON['scaling']): ClusterJSON {
  return {
    kind: 'local',
    workers: 2,
    largest_worker: {
      address: 'tcp://127.0.0.1:1',
      memory: 12 * GiB,
      cpus: 1,
      gpus: 0
    },
    scaling
  };
}

const LOCAL = cluster({
  manager: 'LocalCluster',
  limits: { memory: 24 * GiB, cpus: 2, gpus: 0 }
});

describe('capacityNote', () => {
  it('says nothing when a worker has that much, or nothing is asked, or nothing is known', () => {
    expect(capacityNote(LOCAL, 12 * GiB)).toBeNull();
    expect(capacityNote(LOCAL, null)).toBeNull();
    expect(capacityNote(null, 64 * GiB)).toBeNull();
    expect(
      capacityNote({ kind: 'local', largest_worker: null }, 64 * GiB)
    ).toBeNull();
  });

  it('says a worker of that size will be started when the cluster can grow to it', () => {
    expect(capacityNote(LOCAL, 16e9)).toEqual({
      level: 'info',
      text:
        'More than the largest worker has (12 GiB): nbflow will ask the LocalCluster for a ' +
        'worker of this size, and retire it when idle.'
    });
  });

  it('treats unknown limits (a batch queue) as "can grow"', () => {
    const slurm = cluster({ manager: 'SLURMCluster', limits: null });
    expect(capacityNote(slurm, 500e9)?.level).toBe('info');
    expect(capacityNote(slurm, 500e9)?.text).toContain('ask the SLURMCluster');
  });

  it('warns beyond what the manager can start', () => {
    const note = capacityNote(LOCAL, 64e9);
    expect(note?.level).toBe('warning');
    expect(note?.text).toBe(
      'More than the largest worker has (12 GiB), and more than the LocalCluster can start ' +
        '(24 GiB): no worker could run this step. Run it on a bigger cluster.'
    );
  });

  it('warns when the cluster cannot grow at all', () => {
    expect(capacityNote(cluster(null), 16e9)).toEqual({
      level: 'warning',
      text: 'More than the largest worker has (12 GiB): no worker could run this step.'
    });
    expect(capacityNote(cluster(undefined), 16e9)?.level).toBe('warning');
  });
});
