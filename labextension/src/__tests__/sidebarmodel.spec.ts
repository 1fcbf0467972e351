// The sidebar model's tags, tag filter and comparison: the history is read with `?tag=`, two
// ticked runs open a diff with the older as A, a lineage names the task's step and index, and
// a tag change updates the run and its row. The API is a fake: no server, and the sidebar stays
// hidden (no polling) unless a test shows it.

import { NbflowApi } from '../api';
import { RunDetail, RunListItem, TaskJSON } from '../model';
import { SettingsHolder } from '../settings';
import { OpenRequest, SidebarModel } from '../sidebarmodel';

function item(id: string, started_at: string): RunListItem {
  return {
    id,
    flow: 'flow',
    status: 'succeeded',
    kind: 'headless',
    started_at,
    finished_at: started_at,
    params: {},
    resumed_from: null,
    notebook_path: 'flow.ipynb',
    tags: [],
    note: null,
    duration: 1,
    counts: { succeeded: 2 }
  };
}

const OLD = item('20261127-010000-aaaaaa', '2026-11-27T01:00:00Z');
const NEW = item('20261127-020000-bbbbbb', '2026-11-27T02:00:00Z');

function fakeApi() {
  return {
    runs: jest.fn(async () => ({
      runs: [NEW, OLD],
      offset: 0,
      limit: 50,
      store: 'file:///x/.nbflow'
    })),
    tags: jest.fn(async () => ({ tags: [{ name: 'best', runs: 1 }] })),
    run: jest.fn(
      async (_: string, id: string) =>
        ({ ...OLD, id, tags: [], note: null }) as unknown as RunDetail
    ),
    updateTags: jest.fn(async () => ({ tags: ['best'], note: 'a note' }))
  };
}

function makeModel(api: ReturnType<typeof fakeApi>): SidebarModel {
  return new SidebarModel(api as unknown as NbflowApi, new SettingsHolder());
}

const flush = () => new Promise(resolve => setTimeout(resolve, 0));

describe('SidebarModel: comparison and lineage', () => {
  it('opens the diff of two ticked runs, the older as A', () => {
    const model = makeModel(fakeApi());
    model.setNotebook('dir/flow.ipynb');
    const opened: OpenRequest[] = [];
    model.openRequested.connect((_, r) => opened.push(r));

    expect(model.canCompare).toBe(false);
    model.toggleChecked(NEW);
    model.compare(); // one run: nothing
    model.toggleChecked(OLD);
    expect(model.checked).toEqual([NEW.id, OLD.id]);
    expect(model.canCompare).toBe(true);
    model.compare();
    expect(opened).toEqual([
      { kind: 'diff', notebook: 'dir/flow.ipynb', a: OLD.id, b: NEW.id }
    ]);

    model.toggleChecked(NEW);
    expect(model.isChecked(NEW.id)).toBe(false);
    expect(model.canCompare).toBe(false);
    model.setNotebook('other.ipynb');
    expect(model.checked).toEqual([]);
    model.dispose();
  });

  it("opens an output's lineage in the selected run", () => {
    const model = makeModel(fakeApi());
    model.setNotebook('flow.ipynb');
    const opened: OpenRequest[] = [];
    model.openRequested.connect((_, r) => opened.push(r));
    const task = { id: 7, step: 'make', index: 2 } as TaskJSON;
    model.openLineage(task, 'items'); // no run selected: nothing
    model.selectRun(NEW.id);
    model.openLineage(task, 'items');
    expect(opened).toEqual([
      {
        kind: 'lineage',
        notebook: 'flow.ipynb',
        run: NEW.id,
        step: 'make',
        name: 'items',
        index: 2,
        task: 7
      }
    ]);
    model.dispose();
  });
});

describe('SidebarModel: tags', () => {
  it('reads the history with the tag filter, and the tags', async () => {
    const api = fakeApi();
    const model = makeModel(api);
    model.setNotebook('flow.ipynb');
    model.setTagFilter('best');
    expect(model.tagFilter).toBe('best');
    expect(model.loaded).toBe(false);
    await (model as any)._tick();
    expect(api.runs).toHaveBeenLastCalledWith('flow.ipynb', {
      flow: 'flow',
      tag: 'best',
      limit: 50
    });
    expect(model.tags).toEqual([{ name: 'best', runs: 1 }]);
    expect(model.loaded).toBe(true);
    model.setTagFilter('');
    expect(model.tagFilter).toBeNull();
    await (model as any)._tick();
    expect(api.runs).toHaveBeenLastCalledWith('flow.ipynb', {
      flow: 'flow',
      tag: undefined,
      limit: 50
    });
    model.dispose();
  });

  it('keeps the history when the server has no tags endpoint', async () => {
    const api = fakeApi();
    api.tags.mockImplementation(async () => {
      throw new Error('HTTP 404');
    });
    const model = makeModel(api);
    model.setNotebook('flow.ipynb');
    await (model as any)._tick();
    expect(model.runs).toHaveLength(2);
    expect(model.tags).toEqual([]);
    expect(model.error).toBeNull();
    model.dispose();
  });

  it("updates the selected run's tags and note, and its row", async () => {
    const api = fakeApi();
    const model = makeModel(api);
    model.setNotebook('flow.ipynb');
    await (model as any)._tick();
    model.selectRun(OLD.id);
    await flush();
    expect(model.run?.id).toBe(OLD.id);
    const ok = await model.updateTags({ add: ['best'], note: 'a note' });
    expect(ok).toBe(true);
    expect(api.updateTags).toHaveBeenCalledWith('flow.ipynb', OLD.id, {
      add: ['best'],
      note: 'a note'
    });
    expect(model.run?.tags).toEqual(['best']);
    expect(model.run?.note).toBe('a note');
    expect(model.runs.find(r => r.id === OLD.id)?.tags).toEqual(['best']);
    expect(model.savingTags).toBe(false);

    api.updateTags.mockImplementationOnce(async () => {
      throw new Error('bad tag "a b": a tag cannot contain whitespace');
    });
    expect(await model.updateTags({ add: ['a b'] })).toBe(false);
    expect(model.tagsError).toMatch(/cannot contain whitespace/);
    model.selectRun(null);
    expect(model.tagsError).toBeNull();
    model.dispose();
  });
});
