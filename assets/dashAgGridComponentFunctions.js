/* Cell renderers for dash-ag-grid (looked up by name in columnDefs' cellRenderer). */
var dagcomponentfuncs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});

/** A material id as a link to its page in this app. */
dagcomponentfuncs.MaterialLink = function (props) {
  if (props.value === null || props.value === undefined) { return null; }
  var id = String(props.value);
  return React.createElement(
    "a",
    { href: "/material/" + encodeURIComponent(id), className: "material-link" },
    id
  );
};
