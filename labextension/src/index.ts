// The JupyterLab plugin: wires the sidebar, the status-bar item, the commands (palette, cell
// toolbar) and the settings to the active notebook. Behaviour lives in the other modules.

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  ISanitizer,
  Sanitizer,
  showErrorMessage
} from '@jupyterlab/apputils';
import { Cell } from '@jupyterlab/cells';
import {
  INotebookTracker,
  Notebook,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';

import { NbflowApi } from './api';
import { flowIcon, scaleIcon } from './icons';
import type { ReplyPanel } from './mainview';
import { RunDetail, StepJSON } from './model';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- isVisible needs it synchronously
import { isStepCell } from './resources';
import { SettingsHolder } from './settings';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- activate() adds it at once
import { NbflowSidebar } from './sidebar';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- activate() adds it at once
import { OpenRequest, SidebarModel } from './sidebarmodel';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- activate() adds it at once
import { ClusterStatus } from './statusbar';

const PLUGIN_ID = 'nbflow-labextension:plugin';

export namespace CommandIDs {
  export const runFlow = 'nbflow:run-flow';
  export const showHistory = 'nbflow:show-history';
  export const scaleCell = 'nbflow:scale-cell';
  export const exportFlow = 'nbflow:export';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'nbflow: run history sidebar with DAGs, logs and artifacts; scale a step cell; cluster status.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry, ICommandPalette, IStatusBar, ISanitizer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    sanitizer: IRenderMime.ISanitizer | null
  ): void => {
    const api = new NbflowApi(app.serviceManager.serverSettings);
    const settings = new SettingsHolder();
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(s => settings.attach(s))
        .catch(reason =>
          console.error('nbflow: could not load the settings', reason)
        );
    }

    const current = (): NotebookPanel | null => tracker.currentWidget;
    const activeStepCell = (): Cell | null => {
      const cell = current()?.content.activeCell ?? null;
      return cell &&
        cell.model.type === 'code' &&
        isStepCell(cell.model.sharedModel.getSource())
        ? cell
        : null;
    };

    // -- sidebar -------------------------------------------------------------------------------
    const model = new SidebarModel(api, settings);
    const sidebar = new NbflowSidebar(
      model,
      {
        runFlow: () => void app.commands.execute(CommandIDs.runFlow),
        scaleActiveCell: () => void app.commands.execute(CommandIDs.scaleCell),
        revealStep: (step, run) => void revealStep(step, run),
        canScale: () => activeStepCell() !== null
      },
      sanitizer ?? new Sanitizer()
    );
    app.shell.add(sidebar, 'left', { rank: 650 });

    // The diff of two runs and an artifact's lineage open as tabs of the main area (one per
    // pair of runs, one per output: asking again shows the open tab, read again).
    const openView = async (request: OpenRequest): Promise<void> => {
      const { diffPanelId, lineagePanelId } = await import('./mainview');
      const id =
        request.kind === 'diff'
          ? diffPanelId(request.notebook, request.a, request.b)
          : lineagePanelId(request);
      const open = findMain(id);
      if (open) {
        void open.reload();
        app.shell.activateById(id);
        return;
      }
      // Next to an open diff or lineage tab if there is one, else beside the notebook.
      const sibling = [...app.shell.widgets('main')].find(w =>
        w.hasClass('jp-nbflow-mainview')
      );
      app.shell.add(
        await createView(request),
        'main',
        sibling
          ? { ref: sibling.id, mode: 'tab-after' }
          : { mode: 'split-right' }
      );
      app.shell.activateById(id);
    };
    const createView = async (
      request: OpenRequest
    ): Promise<ReplyPanel<unknown>> => {
      const { DiffPanel, LineagePanel } = await import('./mainview');
      if (request.kind === 'diff') {
        return new DiffPanel(api, request.notebook, request.a, request.b);
      }
      return new LineagePanel(api, request);
    };
    const findMain = (id: string): ReplyPanel<unknown> | null => {
      for (const w of app.shell.widgets('main')) {
        if (w.id === id) {
          return w as ReplyPanel<unknown>;
        }
      }
      return null;
    };
    model.openRequested.connect((_, request) => {
      openView(request).catch(e =>
        showErrorMessage('nbflow', (e as Error).message)
      );
    });

    const revealStep = async (
      step: StepJSON,
      run: RunDetail
    ): Promise<void> => {
      const panel = current();
      if (!panel) {
        return;
      }
      const { cellInfos, findStepCell, revealCell } = await import('./cells');
      const index = findStepCell(
        cellInfos(panel.content),
        { name: step.name, cell: step.cell },
        run.kind
      );
      if (index >= 0) {
        await revealCell(panel, index);
      }
    };

    // -- status bar ----------------------------------------------------------------------------
    let status: ClusterStatus | null = null;
    const notebookChanged = new Signal<object, void>(plugin);
    if (statusBar) {
      status = new ClusterStatus(api, settings);
      statusBar.registerStatusItem('nbflow-labextension:cluster', {
        item: status,
        align: 'left',
        rank: 5,
        isActive: () => current() !== null,
        activeStateChanged: notebookChanged
      });
    }

    // -- following the active notebook and its active cell -------------------------------------
    let watched: Cell | null = null;
    let pending = 0;
    const cellChanged = (): void => {
      // The toolbar button and the sidebar's scale button follow whether it is a step cell.
      window.clearTimeout(pending);
      pending = window.setTimeout(() => {
        app.commands.notifyCommandChanged(CommandIDs.scaleCell);
        sidebar.refreshView();
      }, 150);
    };
    const watchActiveCell = (): void => {
      const cell = current()?.content.activeCell ?? null;
      if (cell === watched) {
        return;
      }
      if (watched && !watched.isDisposed) {
        watched.model.contentChanged.disconnect(cellChanged);
      }
      watched = cell;
      cell?.model.contentChanged.connect(cellChanged);
      cellChanged();
    };
    const followNotebook = (): void => {
      const panel = current();
      const path = panel ? panel.context.localPath : null;
      model.setNotebook(path);
      status?.setNotebook(path);
      notebookChanged.emit();
      watchActiveCell();
    };
    const watchPath = (panel: NotebookPanel): void => {
      panel.context.pathChanged.connect(() => {
        if (panel === current()) {
          followNotebook(); // renamed: its flow's name changed with it
        }
      });
    };
    tracker.forEach(watchPath);
    tracker.widgetAdded.connect((_, panel) => watchPath(panel));
    tracker.currentChanged.connect(followNotebook);
    tracker.activeCellChanged.connect(watchActiveCell);
    followNotebook();

    // A run that starts or ends may bring a cluster or take it away: ask for it again.
    let wasLive = false;
    model.changed.connect(() => {
      if (model.live !== wasLive) {
        wasLive = model.live;
        status?.refresh();
      }
    });

    // A step cell that starts or finishes running in the kernel changes the interactive run.
    const onExecution = (
      _: unknown,
      args: { notebook: Notebook; cell: Cell }
    ): void => {
      if (
        args.notebook.parent === current() &&
        isStepCell(args.cell.model.sharedModel.getSource())
      ) {
        model.refresh(true);
        status?.refresh();
      }
    };
    NotebookActions.executionScheduled.connect(onExecution);
    NotebookActions.executed.connect(onExecution);

    // -- commands ------------------------------------------------------------------------------
    const noArgs = { args: { type: 'object' as const, properties: {} } };
    app.commands.addCommand(CommandIDs.runFlow, {
      label: 'nbflow: Run flow',
      describedBy: noArgs,
      caption:
        'Run the active notebook as a new flow run (nbflow run), saving it first',
      icon: flowIcon,
      isEnabled: () => current() !== null,
      execute: async () => {
        const panel = current();
        if (!panel) {
          return;
        }
        try {
          if (panel.context.model.dirty) {
            await panel.context.save();
          }
          model.setNotebook(panel.context.localPath);
          await model.startRun();
          status?.refresh();
          app.shell.activateById(sidebar.id);
        } catch (e) {
          await showErrorMessage('nbflow: Run flow', (e as Error).message);
        }
      }
    });

    app.commands.addCommand(CommandIDs.showHistory, {
      label: 'nbflow: Show run history',
      describedBy: noArgs,
      caption: 'Show the runs of the active notebook',
      icon: flowIcon,
      execute: () => {
        app.shell.activateById(sidebar.id);
      }
    });

    app.commands.addCommand(CommandIDs.scaleCell, {
      describedBy: {
        args: {
          type: 'object',
          properties: {
            toolbar: {
              type: 'boolean',
              description:
                'Shown in the cell toolbar: an icon, only on step cells'
            }
          }
        }
      },
      label: args => (args.toolbar ? '' : 'nbflow: Scale the active cell'),
      caption: 'Scale this cell: memory, CPUs and GPUs of its tasks',
      icon: args => (args.toolbar ? scaleIcon : undefined),
      isVisible: args => (args.toolbar ? activeStepCell() !== null : true),
      isEnabled: () => current() !== null,
      execute: async () => {
        const panel = current();
        if (!panel) {
          return;
        }
        try {
          const { scaleActiveCell } = await import('./scale');
          await scaleActiveCell(panel, api, settings.current.presets);
        } catch (e) {
          await showErrorMessage('Scale this cell', (e as Error).message);
        }
      }
    });

    app.commands.addCommand(CommandIDs.exportFlow, {
      label: 'nbflow: Export notebook as scheduled flow…',
      describedBy: noArgs,
      caption:
        'Write the notebook as a flow module and a cron/systemd/Airflow/Argo/Kubernetes job',
      icon: flowIcon,
      isEnabled: () => current() !== null,
      execute: async () => {
        const panel = current();
        if (!panel) {
          return;
        }
        const { exportNotebook } = await import('./export');
        await exportNotebook(panel, api, path =>
          app.commands.execute('docmanager:open', { path })
        );
      }
    });

    if (palette) {
      for (const command of [
        CommandIDs.runFlow,
        CommandIDs.showHistory,
        CommandIDs.scaleCell,
        CommandIDs.exportFlow
      ]) {
        palette.addItem({ command, category: 'nbflow' });
      }
    }
  }
};

export default plugin;
