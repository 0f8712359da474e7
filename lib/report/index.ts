// lib/report: figures, tables, results.json and progress bars. Takes plain records (never
// tensors) and never imports tfjs, so any area can report without a dependency on the engine.
export { figuresDir, reportPath } from './paths.js';
export { inNotebook, display, newDisplayId, type DisplayBundle } from './notebook.js';
export {
  saveFigure,
  showFigure,
  closeBrowser,
  findChromium,
  figureHtml,
  plotlyBundlePath,
  plotlyTraceTypes,
  type PlotlyFigure,
  type FigureFormat,
  type SaveFigureOptions,
  type SavedFigure,
} from './figure.js';
export {
  showTable,
  toDataFrame,
  tableToCsv,
  tableToText,
  tableToHtml,
  danfojs,
  type DataFrame,
  type TableRecord,
  type ShowTableOptions,
} from './table.js';
export { writeResults, validateResults, resultsPath, type Claim, type NotebookResults } from './results.js';
export {
  progress,
  formatProgress,
  formatDuration,
  formatStat,
  type ProgressBar,
  type ProgressOptions,
  type ProgressStats,
  type ProgressMode,
} from './progress.js';
