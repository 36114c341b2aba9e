// Decodes a snappy-java stream (what Firehose writes for CompressionFormat
// "Snappy") with snappy-java itself, the reader AWS's own tooling uses.
// Run: java -cp /usr/share/java/snappy-java.jar XerialDecode.java FILE
import org.xerial.snappy.SnappyInputStream;

public class XerialDecode {
    public static void main(String[] args) throws Exception {
        try (var in = new SnappyInputStream(new java.io.FileInputStream(args[0]))) {
            in.transferTo(System.out);
        }
    }
}
