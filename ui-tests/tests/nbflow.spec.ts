/**
 * nbflow's JupyterLab extension, driven in a real `jupyter lab` (Galata) with Debian's Chromium.
 *
 * Each test works in its own folder of the server root (Galata's `tmpPath`), so each test's
 * notebook gets its own `.nbflow/` store and its own history.
 */
import { expect, galata, test } from '@jupyterlab/galata';
import type { Locator, Page } from '@playwright/test';
import { spawnSync } from 'child_process';

/** The extension's DOM ids, classes and commands (from labextension/src). */
const SIDEBAR_ID = 'nbflow-sidebar';
const PLUGIN_ID = 'nbflow-labextension:plugin';
const SCALE_COMMAND = 'nbflow:scale-cell';

const NOTEBOOK = 'flow.ipynb';
const MAKE_LINE = 'hello from make: 3 items';

/** A small flow: the extension, a parameters cell, two steps (make -> total). */
function exampleNotebook(): string {
  const code = (source: string, tags: string[] = []) => ({
    cell_type: 'code',
    execution_count: null,
    metadata: tags.length ? { tags } : {},
    outputs: [],
    source
  });
  return JSON.stringify({
    cells: [
      code('%load_ext nbflow'),
      code('greeting = "hello"\nn = 3', ['parameters']),
      code(
        '%%step make\nitems = list(range(n))\nprint(f"{greeting} from make: {len(items)} items")'
      ),
      // --force: never a cache hit, so re-running it (after scaling) really runs it on a worker.
      code('%%step total --force\ntotal = sum(items)\nprint(f"total is {total}")')
    ],
    metadata: {
      kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' },
      language_info: { name: 'python' }
    },
    nbformat: 4,
    nbformat_minor: 5
  });
}

/**
 * Opens the command palette with its shortcut. A key press that lands while a notebook is still
 * taking focus can be lost, so it is pressed again (only while the palette is closed: the shortcut
 * toggles it) until the palette shows.
 */
async function openPalette(page: Page): Promise<void> {
  const input = page.locator('#command-palette .lm-CommandPalette-input');
  await expect(async () => {
    if (!(await input.isVisible())) {
      await page.keyboard.press('Control+Shift+C');
    }
    await expect(input).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 30_000 });
}

/** Runs a command through the command palette, as a person would. */
async function runFromPalette(page: Page, label: string): Promise<void> {
  await openPalette(page);
  const palette = page.locator('#command-palette');
  const input = palette.locator('.lm-CommandPalette-input');
  await input.fill(label);
  const item = palette.locator('.lm-CommandPalette-item', { hasText: label }).first();
  await expect(item).toBeVisible();
  await item.click();
}

test.describe('smoke', () => {
  test('JupyterLab loads', async ({ page }) => {
    await expect(page.locator('#jp-main-dock-panel')).toBeVisible();
    await expect(page.locator('.jp-LauncherCard').first()).toBeVisible();
  });

  test('the nbflow server extension answers', async ({ page, baseURL }) => {
    const response = await page.request.get(`${baseURL}/nbflow/api/flows`);
    expect(response.status()).toBe(200);
    expect(await response.json()).toHaveProperty('flows');
  });

  test('the nbflow lab extension is installed and enabled', async ({ page }) => {
    // `jupyter labextension list` writes its listing to stderr.
    const listing = spawnSync('jupyter', ['labextension', 'list'], { encoding: 'utf-8' });
    expect(listing.status).toBe(0);
    // eslint-disable-next-line no-control-regex
    const plain = `${listing.stdout}${listing.stderr}`.replace(/\x1b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/nbflow\S*\s+v\S+\s+enabled\s+OK/);
    const tab = page.locator(`.jp-SideBar li.lm-TabBar-tab[data-id="${SIDEBAR_ID}"]`);
    await expect(tab).toBeVisible();
  });
});

test('the palette has nbflow\'s commands; "Show run history" opens the sidebar', async ({
  page
}) => {
  await openPalette(page);
  const palette = page.locator('#command-palette');
  await palette.locator('.lm-CommandPalette-input').fill('nbflow:');
  const labels = ['nbflow: Run flow', 'nbflow: Show run history', 'nbflow: Scale the active cell'];
  for (const label of labels) {
    await expect(palette.locator('.lm-CommandPalette-item', { hasText: label })).toHaveCount(1);
  }
  await page.keyboard.press('Escape');
  await page.sidebar.openTab('filebrowser');
  await expect(page.locator(`#${SIDEBAR_ID}`)).toBeHidden();
  await runFromPalette(page, 'nbflow: Show run history');
  await expect(page.locator(`#${SIDEBAR_ID}`)).toBeVisible();
  await expect(page.locator(`#${SIDEBAR_ID}`)).toContainText(
    'Open a notebook to see the runs of its flow.'
  );
});

test.describe('a flow in the sidebar', () => {
  test.use({
    mockSettings: {
      ...galata.DEFAULT_SETTINGS,
      [PLUGIN_ID]: {
        // 16G: more than any worker of the kernel's LocalCluster here declares (RAM / cores,
        // 12 GiB of 24), less than the machine: the re-run must start a worker that big.
        presets: { memory: ['1G', '4G', '16G'], cpus: [1, 2], gpus: [0, 1] },
        // Poll often, so the test does not wait out the sidebar's backoff.
        polling: { minInterval: 1, maxBackoff: 2, clusterInterval: 2 }
      }
    }
  });

  test('run flow, see its steps and logs, scale a cell', async ({ page, tmpPath }) => {
    // A folder of its own for each attempt: the server extension keeps a store open once it has
    // read it, so a store deleted with an earlier attempt's folder would still be shown.
    const folder = `${tmpPath}/${Date.now().toString(36)}`;
    await page.contents.createDirectory(folder);
    const path = `${folder}/${NOTEBOOK}`;
    await page.contents.uploadContent(exampleNotebook(), 'text', path);
    await page.notebook.openByPath(path);
    await page.notebook.activate(NOTEBOOK);

    // -- Run flow, from the palette: a headless `nbflow run` of the saved notebook ----------
    await runFromPalette(page, 'nbflow: Run flow');
    const sidebar = page.locator(`#${SIDEBAR_ID}`);
    await expect(sidebar).toBeVisible();
    await page.sidebar.setWidth(360, 'left'); // room for a run's row; fixed for the screenshots
    const rows = sidebar.locator('li.jp-nbflow-runrow');
    await expect(rows).toHaveCount(1, { timeout: 60_000 });
    const run = rows.first();
    // The first run starts a Dask LocalCluster: allow for it.
    await expect(run.locator('.jp-nbflow-badge')).toHaveText('succeeded', { timeout: 120_000 });

    // -- The run: its DAG and its steps -------------------------------------------------------
    await run.click();
    const detail = sidebar.locator('.jp-nbflow-detail');
    await expect(detail.locator('svg.jp-nbflow-dag')).toBeVisible();
    await expect(detail.locator('.jp-nbflow-dag-node')).toHaveCount(2);
    await expect(detail.locator('.jp-nbflow-dag-edge')).toHaveCount(1);
    const steps = detail.locator('li.jp-nbflow-step');
    await expect(steps).toHaveCount(2);
    await expect(steps.nth(0)).toContainText('make');
    await expect(steps.nth(1)).toContainText('total');
    for (const step of await steps.all()) {
      await expect(step.locator('.jp-nbflow-dot')).toHaveClass(/jp-nbflow-state-succeeded/);
    }

    if (process.env.NBFLOW_README_SCREENSHOT) {
      // The README's picture: the same view, unmasked (`NBFLOW_README_SCREENSHOT=1`).
      await sidebar.screenshot({ path: '../docs/sidebar.png' });
    }
    await expect(sidebar).toHaveScreenshot('sidebar-finished-run.png', {
      mask: volatile(sidebar)
    });

    // -- A step's task and its logs -----------------------------------------------------------
    await steps.filter({ hasText: 'make' }).click();
    const stepView = detail.locator('.jp-nbflow-stepview');
    await expect(stepView).toContainText('make');
    const task = stepView.locator('.jp-nbflow-taskhead');
    await expect(task).toHaveCount(1);
    await expect(task).toContainText('succeeded');
    // A step with a single task opens it, with its logs.
    await expect(task).toHaveAttribute('aria-expanded', 'true');
    await expect(stepView.locator('.jp-nbflow-log pre.jp-nbflow-pre').first()).toContainText(
      MAKE_LINE
    );

    // -- Run the cells in the kernel (the interactive run), then scale the `total` cell ---------
    await page.notebook.activate(NOTEBOOK);
    await page.notebook.run();
    expect((await page.notebook.getCellTextOutput(3))?.join('')).toContain('total is 3');
    const countBefore = await executionCount(page, 3);
    expect(countBefore).toBeGreaterThan(0);
    // The kernel's run is live: the status bar names its cluster.
    await expect(page.locator('.jp-nbflow-status')).toContainText('Dask: local');

    await page.notebook.selectCells(3);
    const cell = (await page.notebook.getCellLocator(3))!;
    await cell.click(); // the cell toolbar shows on the active cell
    const scale = cell.locator(`.jp-cell-toolbar [data-command="${SCALE_COMMAND}"]`);
    await expect(scale).toBeVisible();
    await scale.click();

    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('.jp-nbflow-scale')).toBeVisible();
    await expect(dialog.locator('.jp-Dialog-header')).toHaveText('Scale this cell');
    await dialog.locator('.jp-nbflow-preset', { hasText: /^16G$/ }).click();
    await expect(dialog.locator('#jp-nbflow-scale-memory')).toHaveValue('16G');
    await expect(dialog.locator('.jp-nbflow-note')).toContainText(
      'nbflow will ask the LocalCluster for a worker of this size'
    );
    await expect(dialog.locator('.jp-Dialog-content')).toHaveScreenshot('scale-dialog.png', {
      // The cluster line and the note name this machine's largest worker (RAM / cores).
      mask: [
        dialog.locator('.jp-nbflow-scale .jp-nbflow-muted', { hasText: /^(Cluster|No live)/ }),
        dialog.locator('.jp-nbflow-note')
      ]
    });
    await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
    await expect(dialog).toHaveCount(0);

    // The cell's header now asks for 16G, and the cell ran again: on a worker of that size that
    // nbflow started for it, since no worker of the cluster declared as much.
    await expect
      .poll(async () => page.notebook.getCellTextInput(3))
      .toBe(
        '%%step total --force\n%%resources memory=16G\ntotal = sum(items)\nprint(f"total is {total}")'
      );
    await expect.poll(async () => executionCount(page, 3)).toBeGreaterThan(countBefore);
    await expect
      .poll(async () => (await page.notebook.getCellTextOutput(3))?.join(''))
      .toContain('total is 3');

    // The kernel's interactive run recorded the second execution with the new request.
    const kernelRun = rows.filter({ hasText: 'kernel' });
    await expect(kernelRun).toHaveCount(1);
    await kernelRun.click();
    await detail.locator('li.jp-nbflow-step', { hasText: 'total' }).click();
    await expect(fieldOf(stepView, 'requests').first()).toHaveText('memory=16G');
    const totalTasks = stepView.locator('.jp-nbflow-taskhead');
    await expect(totalTasks).toHaveCount(2);
    // Executions are listed newest first, and the newest one opens by itself (one task is
    // open at a time).
    await expect(totalTasks.first()).toHaveAttribute('aria-expanded', 'true');
    const newest = stepView.locator('.jp-nbflow-task');
    await expect(newest).toHaveCount(1);
    await expect(fieldOf(newest, 'resources')).toHaveText('memory=16G');
    await expect(newest.locator('.jp-nbflow-log pre.jp-nbflow-pre').first()).toContainText(
      'total is 3'
    );
  });

  test('tags, the tag filter, comparing two runs, and an artifact\'s lineage', async ({
    page,
    tmpPath
  }) => {
    // Two runs made on the command line, the second with another `n`: the same notebook, a
    // changed parameter, so `make` and `total` differ.
    const folder = `${tmpPath}/${Date.now().toString(36)}`;
    await page.contents.createDirectory(folder);
    const path = `${folder}/${NOTEBOOK}`;
    await page.contents.uploadContent(exampleNotebook(), 'text', path);
    const cwd = `${await serverRoot(page)}/${folder}`;
    for (const args of [[], ['-p', 'n=4']]) {
      const made = spawnSync('nbflow', ['run', NOTEBOOK, ...args], {
        cwd,
        encoding: 'utf-8',
        timeout: 180_000
      });
      expect(made.status, `${made.stdout}\n${made.stderr}`).toBe(0);
    }

    await page.notebook.openByPath(path);
    await page.notebook.activate(NOTEBOOK);
    await runFromPalette(page, 'nbflow: Show run history');
    const sidebar = page.locator(`#${SIDEBAR_ID}`);
    await expect(sidebar).toBeVisible();
    await page.sidebar.setWidth(360, 'left');
    const rows = sidebar.locator('li.jp-nbflow-runrow');
    await expect(rows).toHaveCount(2);
    const newer = rows.nth(0); // newest first: the run with n=4
    const older = rows.nth(1);

    // -- Tag the newer run, with a note ------------------------------------------------------
    await newer.click();
    const detail = sidebar.locator('.jp-nbflow-detail');
    await expect(fieldOf(detail, 'params')).toContainText('n=4');
    // A bad tag is pointed out before anything is sent.
    const newTag = detail.getByLabel('New tag');
    await newTag.fill('bad\u0007tag');
    await expect(detail.locator('.jp-nbflow-error')).toContainText('control characters');
    await newTag.fill('best');
    await newTag.press('Enter');
    await expect(fieldOf(detail, 'tags').locator('.jp-nbflow-tag')).toHaveText(['best×']);
    await expect(newTag).toHaveValue('');
    await detail.getByRole('button', { name: 'Edit the note' }).click();
    await detail.getByLabel('Note').fill('n=4: one more item');
    await detail.getByRole('button', { name: 'save', exact: true }).click();
    await expect(fieldOf(detail, 'note')).toContainText('n=4: one more item');
    await expect(newer.locator('.jp-nbflow-tag')).toHaveText('best');
    await expect(newer.locator('.jp-nbflow-runnote')).toHaveText('n=4: one more item');

    // A tag added and removed with its chip's ×.
    await newTag.fill('temporary');
    await newTag.press('Enter');
    await expect(fieldOf(detail, 'tags').locator('.jp-nbflow-tag')).toHaveCount(2);
    await detail.getByRole('button', { name: 'Remove the tag temporary' }).click();
    await expect(fieldOf(detail, 'tags').locator('.jp-nbflow-tag')).toHaveCount(1);

    // -- Filter the history by the tag: only the tagged run remains --------------------------
    const filter = sidebar.getByLabel('Show only the runs with this tag');
    await expect(filter.locator('option[value="best"]')).toHaveCount(1);
    await expect(filter.locator('option[value="temporary"]')).toHaveCount(0);
    await filter.selectOption('best');
    await expect(rows).toHaveCount(1);
    await expect(rows.first().locator('.jp-nbflow-tag')).toHaveText('best');
    await filter.selectOption('');
    await expect(rows).toHaveCount(2);

    // -- Tick both runs and compare: the older is A --------------------------------------------
    const compare = sidebar.getByRole('button', { name: /^Compare/ });
    await expect(compare).toBeDisabled();
    await newer.getByRole('checkbox').check();
    await expect(compare).toBeDisabled();
    await older.getByRole('checkbox').check();
    await expect(compare).toBeEnabled();
    await compare.click();
    const diff = page.locator('.jp-nbflow-diffpanel');
    await expect(diff).toBeVisible();
    await expect(diff.locator('.jp-nbflow-diff-headline')).toContainText('1 parameter changed');
    const nRow = diff.locator('.jp-nbflow-diff-params tr', { hasText: /^n/ });
    await expect(nRow.locator('td')).toHaveText(['n', '3', '4']);
    // B is the tagged run.
    await expect(diff.locator('.jp-nbflow-diff-runs tr').nth(1)).toContainText('best');
    const total = diff.locator('.jp-nbflow-diffstep[data-step="total"]');
    await expect(total).toBeVisible();
    await expect(total.locator('.jp-nbflow-summary')).toContainText('3 → 6');
    const make = diff.locator('.jp-nbflow-diffstep[data-step="make"]');
    await expect(make.locator('.jp-nbflow-diff-inputs')).toContainText('n');
    await expect(make.locator('.jp-nbflow-summary')).toContainText('3 → 4');

    // -- The lineage of `total` in the newer run, from its output row ----------------------------
    // The newer run is still the one shown (ticking runs does not change it).
    await expect(fieldOf(detail, 'params')).toContainText('n=4');
    await detail.locator('li.jp-nbflow-step', { hasText: 'total' }).click();
    const output = detail.locator('.jp-nbflow-outputs tr', { hasText: /^total/ });
    await output.getByRole('button', { name: 'Lineage' }).click();
    const lineage = page.locator('.jp-nbflow-lineagepanel');
    await expect(lineage).toBeVisible();
    await expect(fieldOf(lineage, 'n')).toHaveText('4');
    const tasks = lineage.locator('.jp-nbflow-lineage-task');
    await expect(tasks).toHaveCount(2);
    // The producing task, its code shown.
    await expect(tasks.nth(0).locator('.jp-nbflow-lineage-label')).toHaveText('total');
    await expect(tasks.nth(0).locator('.jp-nbflow-lineage-code')).toBeVisible();
    await expect(tasks.nth(0).locator('.jp-nbflow-lineage-code')).toContainText(
      'total = sum(items)'
    );
    // Its input came from `make`: the link scrolls there; `make` read the parameter n.
    await tasks.nth(0).getByRole('button', { name: 'make' }).click();
    const upstream = tasks.nth(1);
    await expect(upstream).toHaveClass(/jp-mod-selected/);
    await expect(upstream.locator('.jp-nbflow-lineage-label')).toHaveText('make');
    await expect(fieldOf(upstream, 'n parameter').first()).toHaveText('4');
    await upstream.locator('summary', { hasText: 'code' }).click();
    await expect(upstream.locator('.jp-nbflow-lineage-code')).toContainText(
      'items = list(range(n))'
    );
  });
});

/** The absolute path of the server's root folder (where `tmpPath` is), from the page config. */
async function serverRoot(page: Page): Promise<string> {
  const root = await page.evaluate(
    () => JSON.parse(document.getElementById('jupyter-config-data')!.textContent!).serverRoot
  );
  return String(root).replace(/^~(?=\/|$)/, process.env.HOME ?? '~');
}

/** Parts of the sidebar that change from run to run: masked in its screenshots. */
function volatile(sidebar: Locator): Locator[] {
  const fieldRows = sidebar.locator('.jp-nbflow-fields tr', {
    has: sidebar.page().locator('th', { hasText: /^(started|duration|elapsed|cluster)$/ })
  });
  return [
    sidebar.locator('.jp-nbflow-runrow .jp-nbflow-start'),
    sidebar.locator('.jp-nbflow-runrow .jp-nbflow-num'),
    sidebar.locator('.jp-nbflow-head2 .jp-nbflow-mono'),
    fieldRows.locator('td'),
    sidebar.locator('.jp-nbflow-taskhead .jp-nbflow-muted')
  ];
}

/** The value cell of a `<th>NAME</th><td>…</td>` row of the sidebar's field tables. */
function fieldOf(scope: Locator, name: string): Locator {
  return scope
    .locator('.jp-nbflow-fields tr', {
      has: scope.page().locator('th', { hasText: new RegExp(`^${name}$`) })
    })
    .locator('td');
}

/** A code cell's execution count ([N]: in its prompt), 0 if none. */
async function executionCount(page: Page, index: number): Promise<number> {
  const cell = (await page.notebook.getCellLocator(index))!;
  const prompt = await cell.locator('.jp-InputArea-prompt').innerText();
  const match = /\[(\d+)\]/.exec(prompt);
  return match ? Number(match[1]) : 0;
}

test('export the notebook as a scheduled flow, and open what was written', async ({
  page,
  tmpPath
}) => {
  const path = `${tmpPath}/${NOTEBOOK}`;
  await page.contents.uploadContent(exampleNotebook(), 'text', path);
  await page.notebook.openByPath(path);
  await page.notebook.activate(NOTEBOOK);

  await runFromPalette(page, 'nbflow: Export notebook as scheduled flow…');
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.locator('.jp-nbflow-export')).toBeVisible();
  await expect(dialog.locator('#jp-nbflow-export-output')).toHaveValue(`${tmpPath}/flows/flow.py`);
  await dialog.locator('#jp-nbflow-export-target').selectOption('systemd');
  await dialog.locator('#jp-nbflow-export-cron').fill('30 4 * * 1-5');
  await dialog.locator('#jp-nbflow-export-timezone').fill('Europe/Paris');
  await dialog.getByRole('button', { name: 'Export' }).click();

  // The module and both units were written, and opened in the editor.
  const tabs = page.locator('.lm-DockPanel-tabBar .lm-TabBar-tabLabel');
  for (const name of ['flow.py', 'nbflow-flow.service', 'nbflow-flow.timer']) {
    await expect(tabs.filter({ hasText: new RegExp(`^${name.replace(/\./g, '\\.')}$`) })).toHaveCount(1);
  }
  expect(await page.contents.fileExists(`${tmpPath}/flows/flow.py`)).toBe(true);
  const timer = await page.evaluate(
    async p => (await window.jupyterapp.serviceManager.contents.get(p)).content as string,
    `${tmpPath}/flows/nbflow-flow.timer`
  );
  expect(timer).toContain('OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 04:30:00 Europe/Paris');

  // A bad cron expression is refused with the server's message, and nothing breaks.
  await runFromPalette(page, 'nbflow: Export notebook as scheduled flow…');
  await dialog.locator('#jp-nbflow-export-target').selectOption('cron');
  await dialog.locator('#jp-nbflow-export-cron').fill('61 * * * *');
  await dialog.getByRole('button', { name: 'Export' }).click();
  await expect(page.locator('.jp-Dialog')).toContainText('minute field \'61\': 61 is outside 0-59');
});
