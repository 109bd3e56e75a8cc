// placeholder
import { status } from "./common.js";
status("Not built yet.");
document.getElementById("main").dataset.loaded = "true";
