// The extension's icon: a small DAG, drawn in the theme's icon colour.

import { LabIcon } from '@jupyterlab/ui-components';

const FLOW_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="6" cy="5" r="3"/>
    <circle cx="18" cy="5" r="3"/>
    <circle cx="12" cy="19" r="3"/>
    <path d="M6.9 7.6l4.2 8.6-1.8.9-4.2-8.6zM17.1 7.6l1.8.9-4.2 8.6-1.8-.9z"/>
  </g>
</svg>`;

const SCALE_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 3h8v2H6.4l5.3 5.3-1.4 1.4L5 6.4V11H3zM21 21h-8v-2h4.6l-5.3-5.3 1.4-1.4 5.3 5.3V13h2z"/>
  </g>
</svg>`;

export const flowIcon = new LabIcon({ name: 'nbflow:flow', svgstr: FLOW_SVG });
export const scaleIcon = new LabIcon({
  name: 'nbflow:scale',
  svgstr: SCALE_SVG
});
