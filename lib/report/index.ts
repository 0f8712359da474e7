// lib/report: figures, tables, results.json and progress bars. Takes plain records (never
// tensors) and never imports tfjs, so any area can report without a dependency on the engine.
export { figuresDir, reportPath } from './paths.js';
export { inNotebook, display, newDisplayId, type DisplayBundle } from './notebook.js';
export {
  saveFigure,
  showFigure,
  closeBrowser,
  findChromium,
  chromiumCandidates,
  chromiumInstallHint,
  chromiumNotice,
  playwrightCacheDir,
  figureHtml,
  figureFromHtml,
  plotlyBundlePath,
  plotlyTraceTypes,
  type PlotlyFigure,
  type FigureFormat,
  type SaveFigureOptions,
  type SavedFigure,
  type ChromiumSearch,
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
export { writeResults, validateResults, resultsPath, currentBackend, RUN_STARTED_ENV, type Claim, type NotebookResults, type RunInfo } from './results.js';
export {
  collectReport,
  reproductionReportHtml,
  writeReproductionReport,
  screenshotReport,
  formatObserved,
  formatRate as formatReportRate,
  formatNumber as formatReportNumber,
  claimRule,
  claimReason,
  splitPaper,
  paperNumbers,
  summariseSettings,
  formatWallTime,
  formatDate as formatReportDate,
  type ReportOptions,
  type ReproductionReport,
  type ReportNotebook,
  type ReportFigure,
  type ReportRun,
  type WrittenReport,
} from './reproductionReport.js';
export { rapPlayPageHtml } from './playPage.js';
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
